"""`puls bench load` and `puls bench soak` against a real `puls serve` (real data, real model).

Checks the result files' fields, never timings: timings are what the benchmark reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import RemoteServer, puls_env, run_puls

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_load_run_writes_json_plot_and_summary(
    server: RemoteServer, ingested: Path, tmp_path: Path
) -> None:
    result = run_puls(
        "bench", "load", "--url", server.url, "--concurrency", "1,2", "--requests", "4",
        "--warmup", "1", "--max-tokens", "16", "--slo", "ttft_ms=60000,e2e_ms=120000",
        "--label", "ci", "--out-dir", str(tmp_path), "--json",
        env=puls_env(ingested), check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["schema"] == "puls.bench.load/1" and run["label"] == "ci"
    assert run["machine"]["cores"] >= 1 and run["machine"]["gpu"]
    assert run["settings"]["concurrency"] == [1, 2] and run["settings"]["requests_per_level"] == 4
    assert {"ttft_ms", "tpot_ms", "itl_ms", "e2el_ms", "goodput"} <= set(run["conventions"])
    assert "AIPerf" in run["conventions"]["tpot_ms"]
    target = run["endpoints"]["target"]
    assert target["warmup"]["sent"] == 1 and run["ratios"] == []
    assert [level["concurrency"] for level in target["levels"]] == [1, 2]
    for level in target["levels"]:
        assert level["completed"] == 4 and level["failed"] == 0 and level["errors"] == {}
        assert level["token_counting"] == "usage"
        assert level["ttft_ms"]["n"] == 4 and level["ttft_ms"]["p99"] >= level["ttft_ms"]["p50"]
        assert level["e2el_ms"]["p50"] >= level["ttft_ms"]["p50"]
        assert level["goodput"] is not None and level["request_throughput"] > 0
        assert len(level["per_request"]) == 4
        assert {r["prompt_id"] for r in level["per_request"]} == {
            "fr-01",
            "fr-02",
            "fr-03",
            "fr-04",
        }
    files = {kind: tmp_path / name for kind, name in run["files"].items()}
    assert json.loads(files["json"].read_text("utf-8"))["name"] == run["name"]
    assert files["png"].read_bytes().startswith(b"\x89PNG")
    assert "| conc. |" in files["md"].read_text("utf-8")


def test_soak_keeps_the_server_up(server: RemoteServer, ingested: Path, tmp_path: Path) -> None:
    """A small soak (the 1,000-stream one is in docs/benchmarks.md): its bound is wide enough
    that nothing is cancelled, so this checks the report, not the cancellation path."""
    result = run_puls(
        "bench", "soak", "--url", server.url, "--streams", "16", "--max-seconds", "90",
        "--max-tokens", "4", "--watch-after", "2", "--server-pid", str(server.process.pid),
        "--out-dir", str(tmp_path), "--json",
        env=puls_env(ingested), check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    soak = json.loads(result.stdout)
    metrics = soak["metrics_of_finished"]
    assert soak["finished"] + soak["timed_out"] == 16
    assert metrics["failed"] == 0, metrics["errors"]
    assert soak["server"]["pid"] == server.process.pid and soak["server"]["alive_after"]
    assert soak["server"]["health_after"] == {"/healthz": 200, "/readyz": 200}
    assert soak["server"]["rss_mib"]["peak"] >= soak["server"]["rss_mib"]["start"] > 0
    assert server.process.poll() is None
