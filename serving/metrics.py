"""Prometheus metrics of one app, in a registry of its own.

A registry per app (not the global default) so several apps live in one process (tests)
without "Duplicated timeseries" errors. Names follow Prometheus conventions: `puls_` prefix,
base units (`_seconds`), counters end in `_total` (prometheus-client appends it).

Labels stay low-cardinality: `route` is the route template (`/v1/chat/completions`), never
the raw path; `model` is the routing choice (`small`, `large`), not a free string.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# From a few ms (a cached lookup) to tens of seconds (a long CPU generation).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5,
                   2.0, 3.0, 5.0, 10.0, 20.0, 60.0)  # fmt: skip
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                 10.0, 30.0)  # fmt: skip
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5,
                1.0)  # fmt: skip
STAGES = ("request_body", "parse", "retrieve", "rerank", "engine_first_chunk", "generate")

__all__ = ["CONTENT_TYPE_LATEST", "STAGES", "Metrics"]


class Metrics:
    """Every metric the API exports; `render()` is the `/metrics` body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "puls_http_requests", "HTTP requests answered.", ["route", "method", "status"],
            registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "puls_http_errors", "HTTP requests answered with a 4xx or 5xx.", ["route", "status"],
            registry=r,
        )  # fmt: skip
        self.stream_errors = Counter(
            "puls_stream_errors", "Streams that ended with an error event.", ["model"], registry=r
        )
        self.latency = Histogram(
            "puls_http_request_duration_seconds",
            "From the request's arrival to the last byte of its response.",
            ["route", "method"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "puls_time_to_first_token_seconds",
            "From the request's arrival to the first token the model generated.",
            ["model"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.tpot = Histogram(
            "puls_time_per_output_token_seconds",
            "Mean time between generated tokens after the first, per answer.",
            ["model"], buckets=TPOT_BUCKETS, registry=r,
        )  # fmt: skip
        self.stage = Histogram(
            "puls_stage_duration_seconds",
            "Time spent in one stage of an answer: parse, retrieve, rerank, generate, "
            "engine_first_chunk (asking the engine → its first chunk, within generate), and "
            "request_body (the request's arrival → its body's last byte, any POST).",
            ["stage"], buckets=STAGE_BUCKETS, registry=r,
        )  # fmt: skip
        self.prompt_tokens = Counter(
            "puls_prompt_tokens", "Prompt tokens sent to the engines.", ["model"], registry=r
        )
        self.completion_tokens = Counter(
            "puls_completion_tokens", "Tokens the engines generated.", ["model"], registry=r
        )
        self.embedding_tokens = Counter(
            "puls_embedding_tokens", "Tokens embedded by /v1/embeddings.", registry=r
        )
        self.routes = Counter(
            "puls_route_decisions", "Engine chosen per answer, and why.", ["model", "reason"],
            registry=r,
        )  # fmt: skip
        self.degraded = Counter(
            "puls_degraded_answers",
            "Degraded answers by reason: budget_global/budget_user (shortened on the small "
            "model), budget_store (budgets counted in this replica: the shared store is down).",
            ["reason"], registry=r,
        )  # fmt: skip
        self.dropped_intros = Counter(
            "puls_dropped_intros",
            "Intros started beside a search that found no event, then stopped (ADR 0009).",
            registry=r,
        )
        self.budget_rejections = Counter(
            "puls_budget_rejections", "Requests refused (429) by a daily token hard cap.",
            ["scope"], registry=r,
        )  # fmt: skip
        self.cache_requests = Counter(
            "puls_cache_requests",
            "Answer cache lookups: hit, miss, mismatch (a hit that would cite other events "
            "than a fresh search, with PULS_CACHE_VERIFY) or bypass (store down).",
            ["result"], registry=r,
        )  # fmt: skip
        self.memory_store_up = Gauge(
            "puls_memory_store_up", "1 while the session/cache store answers, 0 when degraded.",
            registry=r,
        )  # fmt: skip
        self.memory_store_outages = Counter(
            "puls_memory_store_outages", "Times the session/cache store went down.", registry=r
        )
        self.feedback = Counter(
            "puls_feedback", "Feedback received on answers.", ["rating"], registry=r
        )
        self.profile_store_errors = Counter(
            "puls_profile_store_errors", "Profile requests refused: database down.", registry=r
        )
        self.memory_store_up.set(1)
        for result in ("hit", "miss", "mismatch", "bypass"):
            self.cache_requests.labels(result=result)
        for stage in STAGES:  # export every stage from the start, not after its first sample
            self.stage.labels(stage=stage)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        if status >= 400:
            self.errors.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route, method=method).observe(seconds)

    def observe_stage(self, stage: str, seconds: float) -> None:
        self.stage.labels(stage=stage).observe(seconds)

    def observe_tokens(self, model: str, prompt: int, completion: int) -> None:
        self.prompt_tokens.labels(model=model).inc(prompt)
        self.completion_tokens.labels(model=model).inc(completion)

    def memory_store_changed(self, available: bool) -> None:
        self.memory_store_up.set(1 if available else 0)
        if not available:
            self.memory_store_outages.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
