"""Rerankers: order scored candidates. Two implementations behind one protocol.

`FeatureReranker` (the embedded default) is a weighted sum of explainable features;
`CrossEncoderReranker` (the gpu profile) scores (query, passage) pairs with a
sentence-transformers cross-encoder and keeps the place/time/job features.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol

from retrieval.embedder import dtype_kwargs
from retrieval.query import ParsedQuery
from retrieval.records import Event
from retrieval.settings import RetrievalSettings
from retrieval.text import fold

TIME_DECAY_DAYS = 14.0
ONE_DAY = timedelta(days=1)

_JOBS = re.compile(
    r"\b(recrut\w*|emploi|job|jobs|job dating|france travail|pole emploi|interim\w*|"
    r"information collective|cv|candidat\w*|alternance|embauche|formation professionnelle)\b"
)
# In a description only unambiguous phrases count ("mode d'emploi" is not a job fair).
_JOBS_IN_DESCRIPTION = re.compile(
    r"\b(france travail|pole emploi|job dating|information collective)\b"
)


@dataclass(frozen=True)
class ScoredEvent:
    """An event with the parts of its score, so rankings can be explained."""

    event: Event
    score: float
    dense: float = 0.0
    bm25: float = 0.0
    lexical: float = 0.0
    distance_km: float | None = None
    on_theme: bool = True
    features: dict[str, float] = field(default_factory=dict, compare=False)

    def rescored(self, score: float, features: dict[str, float]) -> ScoredEvent:
        """This candidate with a reranker's score: `dataclasses.replace` is generic and took
        an eighth of a cached-vector search (~70 candidates, more when a search relaxes)."""
        return ScoredEvent(self.event, score, self.dense, self.bm25, self.lexical,
                           self.distance_km, self.on_theme, features)  # fmt: skip


def is_job_session(event: Event) -> bool:
    """Job-centre agendas (recruitment, information sessions) are not outings."""
    return _is_job_text(event.title, event.keywords, event.description)


@lru_cache(maxsize=200_000)
def _is_job_text(title: str, keywords: tuple[str, ...], description: str) -> bool:
    """Memoised: folding every candidate's description on every request cost ~10 ms."""
    if _JOBS.search(fold(f"{title} {' '.join(keywords)}")):
        return True
    return bool(_JOBS_IN_DESCRIPTION.search(fold(description)))


@lru_cache(maxsize=4096)
def mentions_jobs(query_terms: tuple[str, ...]) -> bool:
    """The request is about jobs (then job-centre sessions are what it wants). Memoised: it
    is asked once per candidate."""
    return bool(_JOBS.search(" ".join(query_terms)))


class Reranker(Protocol):
    """Orders candidates best first; sets each `score` and its `features`."""

    def rerank(
        self, parsed: ParsedQuery, candidates: Sequence[ScoredEvent]
    ) -> list[ScoredEvent]: ...


def _scaled(values: Sequence[float]) -> list[float]:
    """Min-max scaling to [0, 1] (all equal → all 1)."""
    lo, hi = min(values, default=0.0), max(values, default=0.0)
    return [1.0 if hi == lo else (v - lo) / (hi - lo) for v in values]


@dataclass(frozen=True)
class ContextFeatures:
    """Place, time and job features, shared by every reranker. Made once per rerank from
    the request, then asked per candidate (~100 of them per search)."""

    geo_scale_km: float | None  # half the radius, when the request is "près de ..."
    window_start: datetime
    asks_jobs: bool

    @classmethod
    def of(cls, parsed: ParsedQuery) -> ContextFeatures:
        near = parsed.near
        scale = None if near is None else near.radius_km / 2
        return cls(scale, parsed.window.start, mentions_jobs(parsed.terms))

    def __call__(self, candidate: ScoredEvent) -> tuple[float, float, float]:
        """(geo, time, job) of `candidate`."""
        geo = 0.0
        if self.geo_scale_km is not None and candidate.distance_km is not None:
            geo = math.exp(-candidate.distance_km / self.geo_scale_km)
        wait = max((candidate.event.start - self.window_start) / ONE_DAY, 0.0)
        job = 1.0 if not self.asks_jobs and is_job_session(candidate.event) else 0.0
        return geo, math.exp(-wait / TIME_DECAY_DAYS), job


class FeatureReranker:
    """score = w·(dense, bm25, title, geo, time) − job_penalty·job."""

    def __init__(self, settings: RetrievalSettings) -> None:
        self.settings = settings

    def rerank(self, parsed: ParsedQuery, candidates: Sequence[ScoredEvent]) -> list[ScoredEvent]:
        s = self.settings
        dense = _scaled([c.dense for c in candidates])
        best_bm25 = max((c.bm25 for c in candidates), default=0.0) or 1.0
        context = ContextFeatures.of(parsed)
        ranked = []
        for candidate, dense_scaled in zip(candidates, dense, strict=True):
            semantic = dense_scaled if candidate.dense else 0.0
            bm25 = candidate.bm25 / best_bm25
            geo, time, job = context(candidate)
            score = (
                s.weight_dense * semantic
                + s.weight_bm25 * bm25
                + s.weight_title * candidate.lexical
                + s.weight_geo * geo
                + s.weight_time * time
                - s.job_penalty * job
            )
            features = {"dense": semantic, "bm25": bm25, "title": candidate.lexical,
                        "geo": geo, "time": time, "job": job}  # fmt: skip
            ranked.append(candidate.rescored(score, features))
        ranked.sort(key=lambda c: c.score, reverse=True)
        return ranked


def load_cross_encoder(model: str, device: str | None, dtype: str | None) -> Any:
    """A sentence-transformers `CrossEncoder` from a local directory or hub id."""
    from sentence_transformers import CrossEncoder

    return CrossEncoder(model, device=device, model_kwargs=dtype_kwargs(dtype))


class CrossEncoderReranker:
    """A sentence-transformers `CrossEncoder` (e.g. BAAI/bge-reranker-v2-m3 on a GPU) scores
    (query, passage) pairs; place, time and job features are added as in `FeatureReranker`.

    Only the feature ranking's best `reranker_depth` candidates are cross-encoded; the rest
    follow in feature order. On an H100 in float16, a bge-reranker-v2-m3-sized model scored
    up to 32 pairs (one batch) in 24 ms p50, and all of a dev query's candidates (a median 97)
    in 80 ms p50, 156 ms p95 (docs/benchmarks.md, gpu stages).

    `model` is a local directory or a hub id; with HF_HUB_OFFLINE=1 it must be on disk.
    """

    def __init__(
        self,
        model: str | Any,
        settings: RetrievalSettings,
        device: str | None = None,
        dtype: str | None = None,
    ):
        if isinstance(model, str):
            model = load_cross_encoder(model, device, dtype)
        self.model = model
        self.settings = settings
        self.features = FeatureReranker(settings)

    def rerank(self, parsed: ParsedQuery, candidates: Sequence[ScoredEvent]) -> list[ScoredEvent]:
        if not candidates:
            return []
        by_features = self.features.rerank(parsed, candidates)
        depth = self.settings.reranker_depth
        head, tail = by_features[:depth], by_features[depth:]
        pairs = [(parsed.text, c.event.passage()) for c in head]
        relevance = _scaled([float(x) for x in self.model.predict(pairs)])
        s = self.settings
        context = ContextFeatures.of(parsed)
        ranked = []
        for candidate, rel in zip(head, relevance, strict=True):
            geo, time, job = context(candidate)
            features = {"cross_encoder": rel, "geo": geo, "time": time, "job": job}
            score = (
                (s.weight_dense + s.weight_bm25 + s.weight_title) * rel
                + s.weight_geo * geo
                + s.weight_time * time
                - s.job_penalty * job
            )
            ranked.append(candidate.rescored(score, features))
        ranked.sort(key=lambda c: c.score, reverse=True)
        return ranked + tail


@lru_cache(maxsize=65536)
def _folded(text: str) -> str:
    """`fold`, remembered: the same candidates' titles come back request after request."""
    return fold(text)


def dedupe(ranked: Sequence[ScoredEvent]) -> list[ScoredEvent]:
    """Drop near-identical events (same folded title, city and start day), keeping the best."""
    seen: set[tuple[str, str, date]] = set()
    kept = []
    for candidate in ranked:
        event = candidate.event
        key = (_folded(event.title), _folded(event.city), event.start.date())
        if key not in seen:
            seen.add(key)
            kept.append(candidate)
    return kept
