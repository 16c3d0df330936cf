"""Ingest into real stores (e5, Milvus Lite, SQLite): counts, idempotence, merging, bad files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.pipeline import ingest_paths
from retrieval import RetrievalSettings, Retriever, close_retriever, open_retriever
from tests.conftest import DATA, puls_env, run_puls

pytestmark = pytest.mark.integration


@pytest.fixture
def retriever(tmp_path: Path) -> Iterator[Retriever]:
    opened = open_retriever(RetrievalSettings(data_dir=tmp_path / "store"))
    yield opened
    close_retriever(opened)


def ods_slice(path: Path, records: list[dict]) -> Path:
    path.write_text(json.dumps({"results": records}, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def records() -> list[dict]:
    return json.loads((DATA / "paris-2025-ods.json").read_text("utf-8"))["results"][:30]


def ingest(retriever: Retriever, *paths: Path):  # type: ignore[no-untyped-def]
    return ingest_paths(
        list(paths), retriever.embedder, retriever.vectors, retriever.events, progress=False
    )


def test_reingest_changes_nothing_and_an_edit_updates_one(
    retriever: Retriever, records: list[dict], tmp_path: Path
) -> None:
    path = ods_slice(tmp_path / "a.json", records)
    first = ingest(retriever, path)
    valid = first.read - first.rejected
    assert first.inserted == valid and first.updated == 0
    assert retriever.events.count() == valid == retriever.vectors.count()

    again = ingest(retriever, path)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, valid)

    records[3] = {**records[3], "title_fr": records[3]["title_fr"] + " (complet)"}
    edited = ingest(retriever, ods_slice(path, records))
    assert (edited.inserted, edited.updated, edited.unchanged) == (0, 1, valid - 1)
    assert retriever.events.get([records[3]["uid"]])[records[3]["uid"]].title.endswith("(complet)")


def test_same_uid_in_two_sources_is_one_event_newest_wins(
    retriever: Retriever, records: list[dict], tmp_path: Path
) -> None:
    older = {**records[0], "title_fr": "Ancien titre", "updatedat": "2020-01-01T00:00:00+00:00"}
    newer = {**records[0], "title_fr": "Nouveau titre", "updatedat": "2025-01-01T00:00:00+00:00"}
    report = ingest(
        retriever,
        ods_slice(tmp_path / "new.json", [newer]),
        ods_slice(tmp_path / "old.json", [older]),
    )
    assert (report.read, report.inserted, report.merged) == (2, 1, 1)
    assert retriever.events.get([records[0]["uid"]])[records[0]["uid"]].title == "Nouveau titre"


def test_a_bad_file_is_named_and_the_rest_still_ingests(
    retriever: Retriever, records: list[dict], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("[{", encoding="utf-8")
    report = ingest(retriever, broken, ods_slice(tmp_path / "good.json", records[:5]))
    assert len(report.errors) == 1 and "broken.json" in report.errors[0]
    assert report.inserted == 5


def test_cli_json_report_and_one_line_errors(tmp_path: Path, records: list[dict]) -> None:
    env = puls_env(tmp_path / "cli-store")
    good = ods_slice(tmp_path / "good.json", records[:4])
    result = run_puls(
        "ingest", str(good), str(tmp_path / "missing.csv"), "--json", env=env, check=False
    )
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert {"read", "inserted", "updated", "unchanged", "rejected"} <= set(report)
    assert report["inserted"] == 4
    assert result.stderr.strip().splitlines() == [
        f"puls: error: {tmp_path / 'missing.csv'}: no such file"
    ]

    search = run_puls(
        "search", "planétarium", "--now", "2025-01-01T10:00:00+01:00", "--json", env=env
    )
    found = json.loads(search.stdout)
    assert found["parse"]["terms"] == ["planetarium"]
    assert found["results"], "the ingested planetarium show was not found"

    bad_now = run_puls("search", "jazz", "--now", "demain", env=env, check=False)
    assert bad_now.returncode == 2 and "--now" in bad_now.stderr
