"""Search: parse the request, fetch filtered candidates (dense + BM25), score, rerank, relax.

Candidates come from two searches under the same filter (time window, city or department,
bounding box): e5 dense vectors and BM25 over folded French text, answered by Milvus or, on
the embedded profile, by its in-memory copy (retrieval/memory_index.py). Each
candidate gets a weighted score (weights in `RetrievalSettings`, documented there):

    dense   cosine, min-max scaled over the candidates
    bm25    BM25 score / best BM25 score among the candidates (0 if not a BM25 hit)
    title   share of the theme words found in the title or keywords
    geo     exp(-distance / (radius / 2)) when the request is "près de ..."
    time    how soon the event starts inside the asked window
    job     a penalty for job-centre sessions unless the request is about jobs

An event is "on theme" when it matches a theme word lexically (BM25 hit or title match);
when fewer than `min_results` are on theme the search relaxes, in this order: widen the
radius, widen the time window, drop the theme, and says which relaxation it applied.

With `PULS_PARSE_REFINER=llm` an LLM fills what the deterministic parse missed before the
search (retrieval/refine.py); without it, or when it fails, the parse is used as it is.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from typing import Literal

from threadpoolctl import threadpool_limits

from retrieval.embedder import Embedder, Vectors
from retrieval.event_store import EventStore
from retrieval.filters import CandidateFilter
from retrieval.geo import GeoIndex, HaversineGeoIndex
from retrieval.memory_index import MemoryIndex
from retrieval.query import Near, ParsedQuery, Window, parse_query
from retrieval.records import Event
from retrieval.refine import ParseRefiner
from retrieval.rerank import (
    FeatureReranker,
    Reranker,
    ScoredEvent,
    dedupe,
    is_job_session,
    mentions_jobs,
)
from retrieval.settings import RetrievalSettings
from retrieval.text import fold, terms
from retrieval.vector_store import CandidateIndex, Hit, MilvusVectorStore

KM_PER_DEGREE_LAT = 111.32
RADIUS_STEPS = (2.0, 4.0)
Mode = Literal["hybrid", "dense", "bm25"]


@dataclass(frozen=True)
class SearchResult:
    parsed: ParsedQuery
    events: list[ScoredEvent]
    relaxed: tuple[str, ...] = ()


def candidate_filter(parsed: ParsedQuery) -> CandidateFilter:
    """The parse's time window, places and bounding box, as both indexes read them."""
    window = parsed.window
    return CandidateFilter(
        start_ts=int(window.start.timestamp()),
        end_ts=None if window.end is None else int(window.end.timestamp()),
        cities=tuple(fold(c) for c in parsed.cities),
        departments=tuple(parsed.departments),
        box=None if parsed.near is None else _bounding_box(parsed.near),
    )


def _bounding_box(near: Near) -> tuple[float, float, float, float]:
    dlat = near.radius_km / KM_PER_DEGREE_LAT
    dlon = near.radius_km / (KM_PER_DEGREE_LAT * max(math.cos(math.radians(near.lat)), 0.01))
    return (near.lat - dlat, near.lat + dlat, near.lon - dlon, near.lon + dlon)


def title_terms(event: Event) -> frozenset[str]:
    """The analysed words of the title and keywords: where a theme word counts double."""
    return frozenset(terms(event.title + " " + " ".join(event.keywords)))


@dataclass(frozen=True)
class TitleMatch:
    """IDF-weighted share of a request's theme words found in a title or keywords.

    A match on a rare word ("souterrain") counts more than on a common one ("visite"); a
    word no title contains weighs `unseen_idf` (the rarest seen). The weights are the
    request's, computed once per search rather than once per candidate.
    """

    weights: dict[str, float]
    total: float

    @classmethod
    def of(
        cls, query_terms: Sequence[str], idf: Mapping[str, float], unseen_idf: float = 1.0
    ) -> TitleMatch:
        weights = {t: idf.get(t, unseen_idf) for t in query_terms}
        return cls(weights, sum(weights.values()) or 1.0)

    def share(self, in_title: AbstractSet[str]) -> float:
        """0 for a request with no theme words."""
        return sum(w for t, w in self.weights.items() if t in in_title) / self.total


@dataclass(frozen=True)
class TitleIndex:
    """Title terms per event and their IDF over the store, computed once (stemming every
    candidate's title on every request cost ~40 ms)."""

    terms: dict[str, frozenset[str]]
    idf: dict[str, float]
    unseen_idf: float = 1.0

    @classmethod
    def build(cls, events: Iterable[Event]) -> TitleIndex:
        by_uid = {event.uid: title_terms(event) for event in events}
        df: Counter[str] = Counter()
        for words in by_uid.values():
            df.update(words)
        n = len(by_uid)
        idf = {t: math.log((n + 1) / (c + 0.5)) for t, c in df.items()}
        return cls(by_uid, idf, max(idf.values(), default=1.0))

    def of(self, event: Event) -> frozenset[str]:
        """Cached terms, or computed for an event ingested after the index was built."""
        return self.terms.get(event.uid) or title_terms(event)


def relaxations(parsed: ParsedQuery) -> Iterator[tuple[ParsedQuery, tuple[str, ...]]]:
    """The parse itself, then ever looser versions: radius ×2 and ×4, open-ended time
    window, and finally no theme. Each comes with the list of relaxations applied."""
    applied: tuple[str, ...] = ()
    yield parsed, applied
    if parsed.near is not None:
        base = parsed.near
        for factor in RADIUS_STEPS:
            widened = replace(base, radius_km=base.radius_km * factor)
            parsed = replace(parsed, near=widened)
            applied = (*applied, f"rayon élargi à {widened.radius_km:g} km")
            yield parsed, applied
    if parsed.window.end is not None:
        start = min(parsed.window.start, parsed.now)
        parsed = replace(parsed, window=Window(start=start, end=None, label="à venir"))
        applied = (*applied, "période élargie aux dates à venir")
        yield parsed, applied
    if parsed.terms:
        applied = (*applied, "thème ignoré")
        yield replace(parsed, terms=()), applied


class Retriever:
    """Finds events for a French request. Thread-safe; built once per process."""

    def __init__(
        self,
        settings: RetrievalSettings,
        embedder: Embedder,
        vectors: MilvusVectorStore,
        events: EventStore,
        reranker: Reranker | None = None,
        geo: GeoIndex | None = None,
        refiner: ParseRefiner | None = None,
    ) -> None:
        self.settings = settings
        self.refiner = refiner
        self.embedder = embedder
        self.vectors = vectors
        self.events = events
        self.reranker: Reranker = reranker or FeatureReranker(settings)
        self.geo: GeoIndex = geo or HaversineGeoIndex()
        self._cities: list[str] | None = None
        self._titles: TitleIndex | None = None
        self._memory: MemoryIndex | None = None
        self._lock = threading.Lock()
        self.query_vector = lru_cache(maxsize=settings.query_vector_cache)(self._embed_query)

    def _embed_query(self, text: str) -> Vectors:
        """Behind `query_vector`, an LRU of `query_vector_cache` entries (vectors are
        read-only, so one request cannot change another's)."""
        vector = self.embedder.embed_queries([text])[0]
        vector.setflags(write=False)
        return vector

    def cities(self) -> list[str]:
        """Known city names (the gazetteer), read once from the event store."""
        with self._lock:
            if self._cities is None:
                self._cities = self.events.cities()
            return self._cities

    def titles(self) -> TitleIndex:
        """Title terms and their IDF over the whole store, built once."""
        with self._lock:
            if self._titles is None:
                self._titles = TitleIndex.build(
                    self.events.get(list(self.events.hashes())).values()
                )
            return self._titles

    def index(self) -> CandidateIndex:
        """Where candidates come from: Milvus itself, or its in-memory copy, (re)loaded
        when the store was written since (`PULS_SEARCH_INDEX`); with the copy, the event
        records are read from memory too (`EventStore.hold_in_memory`)."""
        if self.settings.resolved_search_index() == "milvus":
            return self.vectors
        with self._lock:
            if self._memory is None or self._memory.generation != self.vectors.generation:
                self._memory = MemoryIndex.load(self.vectors)
                self.events.hold_in_memory()  # the candidates' records, read with the copy
                # process-wide: OpenBLAS's pthreads pool is shared by every thread
                threadpool_limits(self.settings.search_threads, user_api="blas")
            return self._memory

    def warm_up(self) -> None:
        """Load the gazetteer, candidate index and term statistics and embed once, so the
        first request pays no start-up cost. The index first: with the in-memory copy the
        title statistics read its events instead of the database again."""
        self.cities()
        self.index()
        self.titles()
        self.embedder.embed_queries(["concert"])

    def parse(
        self, text: str, now: datetime, location: tuple[float, float] | None = None
    ) -> ParsedQuery:
        return parse_query(
            text,
            now,
            cities=self.cities(),
            location=location,
            default_radius_km=self.settings.near_me_radius_km,
        )

    def dense_text(self, parsed: ParsedQuery) -> str:
        """What the dense side embeds for `parsed` (the answer cache keys on it too)."""
        return dense_text(parsed, self.settings.dense_query)

    def search(
        self,
        text: str,
        now: datetime,
        location: tuple[float, float] | None = None,
        top_k: int | None = None,
        mode: Mode = "hybrid",
    ) -> SearchResult:
        """Top events for `text` asked at `now` (relative dates resolve against it).

        `mode` "dense" or "bm25" runs one candidate source alone (the evaluation baselines).
        """
        return self.search_parsed(self.parse(text, now, location), top_k, mode)

    def search_parsed(
        self, parsed: ParsedQuery, top_k: int | None = None, mode: Mode = "hybrid"
    ) -> SearchResult:
        """`search` for a request already parsed: the chat service parses every turn to
        route it, and searches on that same parse (parsing again took only ~0.07 ms, but
        the route and the search now read one parse)."""
        if self.refiner is not None:
            parsed = self.refiner.refine(parsed, self.cities())
        vector = self.query_vector(self.dense_text(parsed)) if mode != "bm25" else None
        limit = top_k or self.settings.top_k
        enough = min(self.settings.min_results, limit)
        # by filter: dropping the theme searches again
        ranks: dict[CandidateFilter, list[ScoredEvent]] = {}
        for attempt, applied in relaxations(parsed):
            theme_dropped = bool(parsed.terms) and not attempt.terms
            # scored with the theme even once dropped: what still matches it comes first
            themed = replace(attempt, terms=parsed.terms)
            key = candidate_filter(themed)
            if key not in ranks:
                ranks[key] = self._rank(themed, vector, mode)
            ranked = list(ranks[key])
            if theme_dropped:
                ranked.sort(key=lambda s: not s.on_theme)
            elif parsed.terms:
                ranked = [s for s in ranked if s.on_theme]
                if len(ranked) < enough:
                    continue
            return SearchResult(parsed, ranked[:limit], applied if ranked else ())
        return SearchResult(parsed, [])  # unreachable: the last relaxation has no theme

    def _candidates(
        self, parsed: ParsedQuery, vector: object, mode: Mode
    ) -> tuple[list[Hit], list[Hit]]:
        where = candidate_filter(parsed)
        n = self.settings.candidates
        index = self.index()
        dense = index.search(vector, n, where) if mode != "bm25" else []  # type: ignore[arg-type]
        query = " ".join(parsed.terms)
        lexical = index.search_lexical(query, n, where) if mode != "dense" and query else []
        return dense, lexical

    def _rank(self, parsed: ParsedQuery, vector: object, mode: Mode) -> list[ScoredEvent]:
        dense, lexical = self._candidates(parsed, vector, mode)
        stored = self.events.get(list(dict.fromkeys(h.uid for h in dense + lexical)))
        dense_by_uid = {h.uid: h.score for h in dense}
        bm25_by_uid = {h.uid: abs(h.score) for h in lexical}
        titles = self.titles()
        distances: dict[str, float] = {}
        if parsed.near is not None:
            near = parsed.near
            distances = self.geo.distances(near.lat, near.lon, stored, near.radius_km)
        exclude_jobs = not mentions_jobs(parsed.terms)
        match = TitleMatch.of(parsed.terms, titles.idf, titles.unseen_idf)
        scored = []
        for uid, event in stored.items():
            if parsed.near is not None and uid not in distances:
                continue
            if exclude_jobs and is_job_session(event):
                continue  # job-centre sessions are not outings (docs/adr/0005)
            share = match.share(titles.of(event))
            scored.append(
                ScoredEvent(
                    event=event,
                    score=0.0,
                    dense=dense_by_uid.get(uid, 0.0),
                    bm25=bm25_by_uid.get(uid, 0.0),
                    lexical=share,
                    distance_km=distances.get(uid),
                    on_theme=_on_theme(parsed, uid in bm25_by_uid, share, mode),
                )
            )
        return dedupe(self.reranker.rerank(parsed, scored))


def dense_text(parsed: ParsedQuery, dense_query: str) -> str:
    """`dense_query` "content": the request less its place and time words (those are filters;
    docs/adr/0005 decision 8); a request with no content words ("que faire ce soir ?") is
    embedded as asked. "question": as asked."""
    if dense_query == "content" and parsed.content:
        return parsed.content
    return parsed.text


def _on_theme(parsed: ParsedQuery, bm25_hit: bool, title_share: float, mode: Mode) -> bool:
    """Matches a theme word lexically (the dense baseline has no lexical side: all count)."""
    return not parsed.terms or mode == "dense" or bm25_hit or title_share > 0
