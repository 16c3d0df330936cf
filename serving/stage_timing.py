"""Times the retriever's rerank stage where it happens, without reaching into retrieval.

The reranker is an injected component (`Retriever.reranker`, a `Reranker` protocol); the
composition root wraps it in `TimedReranker` so each call lands in the stage histogram.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from retrieval.query import ParsedQuery
from retrieval.rerank import Reranker, ScoredEvent
from retrieval.search import Retriever
from serving.metrics import Metrics


class TimedReranker:
    """A `Reranker` that observes `puls_stage_duration_seconds{stage="rerank"}` per call."""

    def __init__(self, inner: Reranker, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def rerank(self, parsed: ParsedQuery, candidates: Sequence[ScoredEvent]) -> list[ScoredEvent]:
        started = time.perf_counter()
        try:
            return self.inner.rerank(parsed, candidates)
        finally:
            self.metrics.observe_stage("rerank", time.perf_counter() - started)


def time_reranker(retriever: Retriever, metrics: Metrics) -> None:
    """Wrap the retriever's reranker once (idempotent)."""
    if not isinstance(retriever.reranker, TimedReranker):
        retriever.reranker = TimedReranker(retriever.reranker, metrics)
