"""The load benchmark's metric math on synthetic timelines with answers worked out by hand."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from benchmarks.load import ConfigError, Endpoint, RequestRecord, distribution, summarise
from benchmarks.load.metrics import meets_slo, token_counting
from benchmarks.load.options import parse_concurrency, parse_slo
from benchmarks.load.prompts import DEFAULT_PROMPTS, chat_body, chat_url, load_prompts

pytestmark = pytest.mark.unit


def record(
    sent: float,
    chunks: list[float],
    done: float | None,
    usage: int | None = None,
    error: str | None = None,
) -> RequestRecord:
    return RequestRecord(
        index=0,
        prompt_id="p",
        sent=sent,
        content_times=chunks,
        done=done,
        usage_tokens=usage,
        error=error,
    )


def test_one_timeline_gives_ttft_tpot_itl_e2e() -> None:
    # sent at 10.0; tokens at +100, +150, +250 ms; [DONE] at +300 ms; usage says 4 tokens.
    r = record(10.0, [10.1, 10.15, 10.25], 10.3, usage=4)
    assert r.ttft == pytest.approx(0.1)
    assert r.e2el == pytest.approx(0.3)
    assert r.tpot == pytest.approx((0.3 - 0.1) / 3)  # (E2E - TTFT) / (tokens - 1)
    assert r.itls == pytest.approx([0.05, 0.1])
    assert r.token_source == "usage" and r.output_tokens == 4


def test_without_usage_one_token_per_content_chunk() -> None:
    r = record(0.0, [0.2, 0.3, 0.5], 0.5)
    assert r.token_source == "chunks" and r.output_tokens == 3
    assert r.tpot == pytest.approx((0.5 - 0.2) / 2)


def test_single_token_has_no_tpot_and_meets_a_tpot_slo() -> None:
    r = record(0.0, [0.2], 0.25, usage=1)
    assert r.tpot is None
    assert meets_slo(r, {"tpot_ms": 1.0})
    assert not meets_slo(r, {"ttft_ms": 100.0})


def test_empty_answer_is_completed_without_ttft() -> None:
    r = record(0.0, [], 0.4, usage=0)
    assert r.ok and r.ttft is None and r.tpot is None
    assert meets_slo(r, {"ttft_ms": 500.0}) and not meets_slo(r, {"ttft_ms": 300.0})
    level = summarise([r], 1.0)
    assert level["completed"] == 1 and level["empty_answers"] == 1 and level["failed"] == 0
    assert level["ttft_ms"]["n"] == 0 and level["e2el_ms"]["p50"] == pytest.approx(400.0)


def test_percentiles_interpolate_linearly_like_vllm() -> None:
    d = distribution([0.001, 0.002, 0.003, 0.004, 0.005])  # 1..5 ms
    assert d["n"] == 5 and d["mean"] == pytest.approx(3.0)
    assert d["p50"] == pytest.approx(3.0)
    assert d["p90"] == pytest.approx(4.6)  # 1 + 0.9 * 4
    assert d["p95"] == pytest.approx(4.8)
    assert d["p99"] == pytest.approx(4.96)
    assert distribution([])["p50"] is None


def test_level_summary_pools_itl_counts_errors_and_goodput() -> None:
    fast = record(0.0, [0.1, 0.2, 0.3], 0.3, usage=3)  # TTFT 100, TPOT 100, E2E 300
    slow = record(0.0, [0.8, 1.0], 1.2, usage=2)  # TTFT 800, TPOT 400, E2E 1200
    truncated = record(0.0, [0.1], None, error="truncated")
    event = record(0.0, [0.1], None, error="error_event")
    level = summarise([fast, slow, truncated, event], 2.0, {"ttft_ms": 500, "tpot_ms": 200})
    assert (level["requests"], level["completed"], level["failed"]) == (4, 2, 2)
    assert level["error_rate"] == 0.5
    assert level["errors"] == {"error_event": 1, "truncated": 1}
    assert level["total_output_tokens"] == 5
    assert level["request_throughput"] == pytest.approx(1.0)  # 2 done / 2 s
    assert level["output_throughput"] == pytest.approx(2.5)
    assert level["slo_met"] == 1 and level["goodput"] == pytest.approx(0.5)
    assert level["itl_ms"]["n"] == 3  # pooled: 2 gaps + 1 gap
    assert level["itl_ms"]["mean"] == pytest.approx((100 + 100 + 200) / 3, abs=1e-3)
    assert level["ttft_ms"]["mean"] == pytest.approx(450.0)
    assert level["tpot_ms"]["p50"] == pytest.approx(250.0)
    assert level["e2el_ms"]["p99"] == pytest.approx(300 + 0.99 * 900)


def test_goodput_is_none_without_slo_and_counting_is_named() -> None:
    by_usage = record(0.0, [0.1, 0.2], 0.2, usage=2)
    by_chunks = record(0.0, [0.1, 0.2], 0.2)
    assert summarise([by_usage], 1.0)["goodput"] is None
    assert token_counting([by_usage]) == "usage"
    assert token_counting([by_chunks]) == "chunks"
    assert token_counting([by_usage, by_chunks]) == "mixed"


def test_options_parse_and_reject() -> None:
    assert parse_concurrency("1,2,4,8") == (1, 2, 4, 8)
    assert parse_slo("ttft_ms=500, tpot_ms=50,e2e_ms=3000") == {
        "ttft_ms": 500.0,
        "tpot_ms": 50.0,
        "e2e_ms": 3000.0,
    }
    assert parse_slo(None) == {}
    for bad in ("0,1", "a,b", ""):
        with pytest.raises(ConfigError):
            parse_concurrency(bad)
    for bad in ("ttft=500", "ttft_ms=fast", "tpot_ms=-1", "e2e_ms"):
        with pytest.raises(ConfigError):
            parse_slo(bad)


def test_shipped_prompts_are_french_event_questions_with_a_moment() -> None:
    prompts = load_prompts(DEFAULT_PROMPTS)
    assert len(prompts) >= 40 and len({p.id for p in prompts}) == len(prompts)
    for p in prompts:
        assert datetime.fromisoformat(p.puls["now"]).tzinfo is not None
        assert set(p.puls) <= {"now", "location"}
    assert sum("location" in p.puls for p in prompts) >= 4


def test_bad_prompt_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"query": "ok"}) + "\n{not json}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"p\.jsonl:2"):
        load_prompts(path)


def test_bodies_ask_for_usage_and_carry_the_extension_only_where_spoken() -> None:
    prompt = load_prompts(DEFAULT_PROMPTS)[0]
    ours = chat_body(prompt, Endpoint("target", "u", "puls"), 32)
    raw = chat_body(prompt, Endpoint("baseline", "u", "gemma", extension=False), 32)
    assert ours["stream"] and ours["stream_options"] == {"include_usage": True}
    assert ours["puls"]["now"] == prompt.puls["now"] and ours["max_tokens"] == 32
    assert "puls" not in raw and raw["model"] == "gemma"


def test_chat_url_accepts_root_v1_or_full() -> None:
    full = "http://h:1/v1/chat/completions"
    assert chat_url("http://h:1") == chat_url("http://h:1/v1/") == chat_url(full) == full
