"""Per-request timelines and the metrics computed from them, with the definitions of vLLM's
`bench serve` (vllm/benchmarks/serve.py `calculate_metrics`) so the numbers compare.

A `RequestRecord` holds raw monotonic timestamps only; every metric is derived here, so the
math can be checked on synthetic timelines with known answers.

- TTFT: request sent -> first chunk carrying non-empty content (AIPerf's "first non-empty
  response"; vLLM takes the first chunk with `choices`, which on vLLM's server is the same chunk).
- TPOT: (E2E - TTFT) / (output tokens - 1), for requests with more than one output token.
  vLLM calls it TPOT; GenAI-Perf/AIPerf call the same quantity "inter-token latency".
- ITL: vLLM's ITL: the gaps between successive content chunks, pooled over all requests.
  With one token per chunk it approaches TPOT; when a server sends several tokens per chunk it
  does not, and the two disagree on purpose.
- E2E: request sent -> `data: [DONE]`.
- A stream that completes with no content (the model stopped at once) is a completed request
  with 0 tokens and no TTFT, counted in `empty_answers`; it is not an error.
- Percentiles: numpy's linear interpolation, as vLLM.
- Goodput: completed requests meeting every given SLO, per second (vLLM `--goodput`); a request
  with one output token has no TPOT and meets a TPOT SLO, as in vLLM.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

PERCENTILES = (50, 90, 95, 99)
SLO_KEYS = ("ttft_ms", "tpot_ms", "e2e_ms")
CONVENTIONS = {
    "ttft_ms": "time to first non-empty content chunk (vLLM TTFT, AIPerf time_to_first_token)",
    "tpot_ms": "(E2E - TTFT) / (output_tokens - 1): vLLM TPOT = GenAI-Perf/AIPerf "
    "inter_token_latency",
    "itl_ms": "vLLM ITL: gaps between successive content chunks, pooled over requests "
    "(no AIPerf equivalent)",
    "e2el_ms": "request sent to data: [DONE] (vLLM E2EL, AIPerf request_latency)",
    "output_throughput": "output tokens / benchmark duration (vLLM output_throughput)",
    "request_throughput": "completed requests / benchmark duration",
    "goodput": "completed requests meeting every SLO / benchmark duration (vLLM request_goodput)",
    "percentiles": "numpy linear interpolation, as vLLM",
}


@dataclass
class RequestRecord:
    """One request's timeline, in `time.perf_counter()` seconds."""

    index: int
    prompt_id: str
    sent: float
    content_times: list[float] = field(default_factory=list)
    done: float | None = None
    usage_tokens: int | None = None
    error: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        """Completed: `[DONE]` arrived and nothing failed (an empty answer is still an answer)."""
        return self.error is None and self.done is not None

    @property
    def token_source(self) -> str:
        """'usage' when the server reported completion_tokens, else 'chunks' (one per chunk)."""
        return "usage" if self.usage_tokens is not None else "chunks"

    @property
    def output_tokens(self) -> int:
        return self.usage_tokens if self.usage_tokens is not None else len(self.content_times)

    @property
    def ttft(self) -> float | None:
        """None for an empty answer (the model stopped at once): there was no first token."""
        return self.content_times[0] - self.sent if self.content_times else None

    @property
    def e2el(self) -> float:
        assert self.done is not None, "e2el of an unfinished request"
        return self.done - self.sent

    @property
    def tpot(self) -> float | None:
        ttft = self.ttft
        if ttft is None or self.output_tokens <= 1:
            return None
        return (self.e2el - ttft) / (self.output_tokens - 1)

    @property
    def itls(self) -> list[float]:
        return [b - a for a, b in pairwise(self.content_times)]

    def as_row(self) -> dict[str, Any]:
        """The per-request line of the run JSON (milliseconds)."""
        ok = self.ok
        ttft, tpot = (self.ttft, self.tpot) if ok else (None, None)
        return {
            "index": self.index,
            "prompt_id": self.prompt_id,
            "ok": ok,
            "error": self.error,
            "message": self.message,
            "ttft_ms": None if ttft is None else _ms(ttft),
            "tpot_ms": None if tpot is None else _ms(tpot),
            "e2el_ms": _ms(self.e2el) if ok else None,
            "output_tokens": self.output_tokens if ok else None,
            "content_chunks": len(self.content_times),
            "token_source": self.token_source,
        }


def nearest_rank(values: list[float], q: float) -> float:
    """The `q` quantile (0-1) as the nearest observed value, not an interpolation."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def distribution(values_s: list[float]) -> dict[str, float | int | None]:
    """mean and p50/p90/p95/p99 in milliseconds; None when there is nothing to summarise."""
    if not values_s:
        return {"n": 0, "mean": None, **{f"p{p}": None for p in PERCENTILES}}
    ms = np.asarray(values_s, dtype=float) * 1000
    out: dict[str, float | int | None] = {"n": len(values_s), "mean": round(float(ms.mean()), 3)}
    for p in PERCENTILES:
        out[f"p{p}"] = round(float(np.percentile(ms, p)), 3)
    return out


def meets_slo(record: RequestRecord, slo_ms: dict[str, float]) -> bool:
    """Every given SLO holds. A request without TPOT (one token) meets a TPOT SLO, as in vLLM;
    an empty answer's TTFT is its E2E (the user waited that long to see that nothing came)."""
    if not record.ok:
        return False
    ttft = record.ttft
    measured = {
        "ttft_ms": record.e2el if ttft is None else ttft,
        "tpot_ms": record.tpot or 0.0,
        "e2e_ms": record.e2el,
    }
    return all(measured[key] * 1000 <= limit for key, limit in slo_ms.items())


def token_counting(records: list[RequestRecord]) -> str:
    """How output tokens were counted over the completed requests: usage, chunks or mixed."""
    sources = {r.token_source for r in records if r.ok}
    if not sources:
        return "none"
    return sources.pop() if len(sources) == 1 else "mixed"


def summarise(
    records: list[RequestRecord], duration_s: float, slo_ms: dict[str, float] | None = None
) -> dict[str, Any]:
    """Aggregate metrics of one load level; `duration_s` is first send to last completion."""
    done = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok]
    output_tokens = sum(r.output_tokens for r in done)
    tpots = [t for r in done if (t := r.tpot) is not None]
    errors = Counter(r.error or "incomplete" for r in failed)
    per_s = 1.0 / duration_s if duration_s > 0 else 0.0
    good = sum(meets_slo(r, slo_ms) for r in done) if slo_ms else None
    return {
        "requests": len(records),
        "completed": len(done),
        "failed": len(failed),
        "error_rate": round(len(failed) / len(records), 4) if records else 0.0,
        "errors": dict(sorted(errors.items())),
        "empty_answers": sum(not r.content_times for r in done),
        "duration_s": round(duration_s, 4),
        "total_output_tokens": output_tokens,
        "token_counting": token_counting(records),
        "request_throughput": round(len(done) * per_s, 4),
        "output_throughput": round(output_tokens * per_s, 4),
        "goodput": None if good is None else round(good * per_s, 4),
        "slo_met": good,
        "ttft_ms": distribution([t for r in done if (t := r.ttft) is not None]),
        "tpot_ms": distribution(tpots),
        "itl_ms": distribution([gap for r in done for gap in r.itls]),
        "e2el_ms": distribution([r.e2el for r in done]),
    }
