"""`puls eval retrieval` on the ingested real-data slice: the report's shape and sanity."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from tests.conftest import puls_env, run_puls

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def graded_jazz_query(sample_files: list[Path], path: Path) -> None:
    """One query graded like shared/eval: 2 = theme in the title, 1 = in the description."""
    relevant = {}
    with sample_files[0].open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["date_start"].startswith("2025-06") and row["city"] == "Paris":
                if re.search("jazz", row["title"] + row["keywords"], re.I):
                    relevant[row["id"]] = 2
                elif re.search("jazz", row["description"], re.I):
                    relevant[row["id"]] = 1
    lines = [
        {"id": "jazz", "query": "Un concert de jazz à Paris en juin 2025 ?",
         "now": "2025-06-01T10:00:00+02:00", "relevant": relevant},
        {"id": "near", "query": "Que faire ce soir près de moi ?",
         "now": "2025-06-21T15:00:00+02:00", "location": {"lat": 48.8606, "lon": 2.3376},
         "relevant": {"39389254": 1}},
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")


def relevant_uids(queries: Path) -> set[str]:
    first = json.loads(queries.read_text("utf-8").splitlines()[0])
    return set(first["relevant"])


def test_eval_reports_hybrid_and_baselines(
    ingested: Path, sample_files: list[Path], tmp_path: Path
) -> None:
    queries = tmp_path / "dev.jsonl"
    graded_jazz_query(sample_files, queries)
    out = tmp_path / "report.json"
    result = run_puls(
        "eval", "retrieval", str(queries), "--json", "--out", str(out), env=puls_env(ingested)
    )
    report = json.loads(result.stdout)
    assert report["n"] == 2 and json.loads(out.read_text("utf-8")) == report
    assert set(report["baselines"]) == {"bm25", "dense"}
    for metrics in (report["metrics"], *report["baselines"].values()):
        assert set(metrics) == {"ndcg@10", "recall@10", "p@5"}
        assert all(0.0 <= v <= 1.0 for v in metrics.values())
    jazz = next(q for q in report["per_query"] if q["id"] == "jazz")
    assert jazz["n_relevant"] >= 1 and jazz["ranked"][0] in relevant_uids(queries), jazz
    assert jazz["ndcg@10"] >= 0.6, jazz
    assert len(jazz["ranked"]) <= 10


def test_eval_rejects_a_bad_file_in_one_line(ingested: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "query": "jazz"}\n', encoding="utf-8")
    result = run_puls("eval", "retrieval", str(bad), env=puls_env(ingested), check=False)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("puls: error:") and "line 1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_backend_without_its_model_is_one_line(tmp_path: Path) -> None:
    env = puls_env(tmp_path, PULS_RERANKER="cross-encoder")
    result = run_puls("search", "concert", env=env, check=False)
    assert result.returncode != 0
    message = "puls: error: PULS_RERANKER=cross-encoder needs PULS_RERANKER_MODEL"
    assert result.stderr.strip() == message
