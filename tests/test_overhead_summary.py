"""benchmarks/overhead_summary.py: the target's verdict over several overhead runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.overhead import INSTANT_ENGINE, LLAMA_ENGINE, summarise
from benchmarks.overhead_summary import SummaryError, main, summarise_runs

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
ENGINES = {"instant": INSTANT_ENGINE, "llama": LLAMA_ENGINE}


def _run_file(
    folder: Path,
    name: str,
    engine: str,
    stack: str,
    raw_ms: list[float],
    added_ms: float,
    stack_settings: dict[str, str] | None = None,
) -> Path:
    """A result as benchmarks/overhead.py writes it: its `summarise` over requests whose
    stack TTFT is the raw one plus `added_ms`, one question per raw value."""
    rows = []
    for i, ms in enumerate(raw_ms):
        for system, ttft in (("raw", ms), ("stack", ms + added_ms)):
            rows.append({"prompt_id": f"q{i}", "system": system, "round": 0, "events": 3,
                         "ttft_s": ttft / 1000, "first_byte_s": ttft / 1000,
                         "e2e_s": (ttft + 50) / 1000})  # fmt: skip
    report = {
        "benchmark": "overhead",
        "settings": {
            "engine": ENGINES[engine],
            "stack": f"puls serve {stack}",
            "settle_ms": 0.0,
            "stack_settings": stack_settings or {},
        },
        **summarise({"rows": rows, "stages": {}}),
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    return path


def test_own_time_and_client_view_are_shares_of_the_models_median_ttft(tmp_path: Path) -> None:
    """Own time: the instant runs' mean overhead; the denominator: the median of the llama
    runs' raw p50s (100, 130 and 140 ms → 130 ms, not their mean; 5 % is 6.5 ms)."""
    files = [
        _run_file(tmp_path, "i-noray-1", "instant", "--no-ray", [1.0, 1.0], 4.0),
        _run_file(tmp_path, "i-noray-2", "instant", "--no-ray", [1.0, 1.0], 5.0),
        _run_file(tmp_path, "i-ray", "instant", "--ray", [1.0, 1.0], 6.6),
        _run_file(tmp_path, "l-noray-1", "llama", "--no-ray", [100.0, 100.0], 3.0),
        _run_file(tmp_path, "l-noray-2", "llama", "--no-ray", [140.0, 140.0], 5.0),
        _run_file(tmp_path, "l-ray", "llama", "--ray", [130.0, 130.0], 7.2),
    ]
    summary = summarise_runs(files)
    assert summary["raw_ttft_p50_ms_median"] == 130.0
    noray, ray = summary["stacks"]["--no-ray"], summary["stacks"]["--ray"]
    assert noray["instant"]["runs"] == 2 and noray["instant"]["overhead_mean_ms"] == 4.5
    assert noray["own_share"] == pytest.approx(4.5 / 130, abs=1e-4)
    assert noray["client_share"] == pytest.approx(4.0 / 130, abs=1e-4)
    assert noray["targets"] == {"own_share_le_5pct": True, "client_share_le_5pct": True,
                                "p95_le_30ms_every_run": True}  # fmt: skip
    assert ray["own_share"] == pytest.approx(6.6 / 130, abs=1e-4)
    assert ray["targets"]["own_share_le_5pct"] is False
    assert ray["targets"]["client_share_le_5pct"] is False


def test_one_run_over_30_ms_at_p95_fails_that_target(tmp_path: Path) -> None:
    files = [
        _run_file(tmp_path, "i", "instant", "--no-ray", [1.0] * 20, 2.0),
        _run_file(tmp_path, "l-1", "llama", "--no-ray", [200.0] * 20, 3.0),
        _run_file(tmp_path, "l-2", "llama", "--no-ray", [200.0] * 20, 31.0),
    ]
    targets = summarise_runs(files)["stacks"]["--no-ray"]["targets"]
    assert targets["p95_le_30ms_every_run"] is False
    assert targets["own_share_le_5pct"] is True  # 2 ms of 200


def test_runs_with_other_settings_are_reported_apart(tmp_path: Path) -> None:
    """A stack started with `--set`, or with a variable the run file names, is another
    stack: it neither joins nor decides."""
    overlap = {"PULS_INTRO_DURING_SEARCH": "true"}
    by_hand = _run_file(tmp_path, "i-env", "instant", "--no-ray", [1.0], 50.0)
    report = json.loads(by_hand.read_text(encoding="utf-8"))
    report["settings"]["environment"] = {"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "30"}
    by_hand.write_text(json.dumps(report), encoding="utf-8")
    files = [
        _run_file(tmp_path, "i", "instant", "--no-ray", [1.0], 4.0),
        _run_file(tmp_path, "i-set", "instant", "--no-ray", [1.0], 40.0, overlap),
        by_hand,
        _run_file(tmp_path, "l", "llama", "--no-ray", [100.0], 3.0),
    ]
    summary = summarise_runs(files)
    assert summary["stacks"]["--no-ray"]["instant"]["overhead_mean_ms"] == 4.0
    others = sorted(g["overhead_mean_ms"] for g in summary["other_settings"].values())
    assert others == [40.0, 50.0]
    assert "--ray" not in summary["stacks"]  # not run: nothing said about it


def test_a_set_that_cannot_decide_is_refused(tmp_path: Path) -> None:
    only_instant = [_run_file(tmp_path, "i", "instant", "--no-ray", [1.0], 4.0)]
    with pytest.raises(SummaryError, match="no llama run"):
        summarise_runs(only_instant)
    only_llama = [_run_file(tmp_path, "l", "llama", "--ray", [100.0], 4.0)]
    with pytest.raises(SummaryError, match="both the instant engine and llama"):
        summarise_runs(only_llama)


def test_the_command_line_names_a_bad_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.json"
    notes.write_text('{"benchmark": "search_latency"}', encoding="utf-8")
    assert main([str(notes)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("overhead_summary: ") and str(notes) in err and "\n" not in err
    assert main([str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    other = _run_file(tmp_path, "other", "llama", "--no-ray", [100.0], 3.0)
    report = json.loads(other.read_text(encoding="utf-8"))
    report["settings"]["engine"] = "a vLLM server"  # no engine this summary knows
    other.write_text(json.dumps(report), encoding="utf-8")
    assert main([str(other)]) == 2
    assert "unknown engine 'a vLLM server'" in capsys.readouterr().err


def test_the_committed_runs_of_one_machine_are_read(tmp_path: Path) -> None:
    """The files benchmarks/overhead.py wrote in a session (docs/benchmarks.md): the summary
    reads their real format and writes what it prints."""
    files = sorted(RESULTS.glob("overhead-*-5k-s17-*.json"))
    assert files, "this session's overhead runs are committed"
    out = tmp_path / "summary.json"
    assert main([*map(str, files), "--out", str(out)]) == 0
    summary = json.loads(out.read_text(encoding="utf-8"))
    assert summary["files"] == len(files)
    assert set(summary["stacks"]) == {"--no-ray", "--ray"}
    for stack in summary["stacks"].values():
        assert stack["instant"]["runs"] >= 3 and stack["llama"]["runs"] >= 4
        assert 0 < stack["own_share"] < 0.2
