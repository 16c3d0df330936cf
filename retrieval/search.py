"""Search: parse the request, fetch filtered dense candidates from Milvus, score, keep the top.

score = cosine(query, event) + lexical_weight * share of theme terms found in title/keywords
(half credit for a match in the description only). Events outside the asked time window,
city or radius never reach scoring: those are Milvus filters, then an exact distance check.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from retrieval.embedder import Embedder
from retrieval.event_store import EventStore
from retrieval.query import Near, ParsedQuery, parse_query
from retrieval.records import Event
from retrieval.settings import RetrievalSettings
from retrieval.text import fold, terms
from retrieval.vector_store import MilvusVectorStore

EARTH_RADIUS_KM = 6371.0088
KM_PER_DEGREE_LAT = 111.32


@dataclass(frozen=True)
class ScoredEvent:
    """An event with the parts of its score, so rankings can be explained."""

    event: Event
    score: float
    dense: float
    lexical: float
    distance_km: float | None = None


@dataclass(frozen=True)
class SearchResult:
    parsed: ParsedQuery
    events: list[ScoredEvent]


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


def milvus_filter(parsed: ParsedQuery) -> str:
    """The Milvus boolean expression for the parse's time window, cities and bounding box."""
    clauses = [f"end_ts >= {int(parsed.window.start.timestamp())}"]
    if parsed.window.end is not None:
        clauses.append(f"start_ts < {int(parsed.window.end.timestamp())}")
    if parsed.cities:
        keys = ", ".join(f'"{fold(c)}"' for c in parsed.cities)
        clauses.append(f"city_key in [{keys}]")
    if parsed.near is not None:
        clauses.append(_bounding_box(parsed.near))
    return " and ".join(clauses)


def _bounding_box(near: Near) -> str:
    dlat = near.radius_km / KM_PER_DEGREE_LAT
    dlon = near.radius_km / (KM_PER_DEGREE_LAT * max(math.cos(math.radians(near.lat)), 0.01))
    return (
        f"lat >= {near.lat - dlat} and lat <= {near.lat + dlat} and "
        f"lon >= {near.lon - dlon} and lon <= {near.lon + dlon}"
    )


def lexical_match(query_terms: Sequence[str], event: Event) -> float:
    """Share of query terms in the title or keywords (1 each) or only the description (0.5)."""
    if not query_terms:
        return 0.0
    strong = set(terms(event.title + " " + " ".join(event.keywords)))
    weak = set(terms(event.description))
    found = sum(1.0 if t in strong else 0.5 if t in weak else 0.0 for t in query_terms)
    return found / len(query_terms)


class Retriever:
    """Finds events for a French request. Thread-safe; built once per process."""

    def __init__(
        self,
        settings: RetrievalSettings,
        embedder: Embedder,
        vectors: MilvusVectorStore,
        events: EventStore,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.vectors = vectors
        self.events = events
        self._cities: list[str] | None = None
        self._lock = threading.Lock()

    def cities(self) -> list[str]:
        """Known city names (the gazetteer), read once from the event store."""
        with self._lock:
            if self._cities is None:
                self._cities = self.events.cities()
            return self._cities

    def warm_up(self) -> None:
        """Load the gazetteer and embed once, so the first request pays no start-up cost."""
        self.cities()
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

    def search(
        self,
        text: str,
        now: datetime,
        location: tuple[float, float] | None = None,
        top_k: int | None = None,
    ) -> SearchResult:
        """Top events for `text` asked at `now` (relative dates resolve against it)."""
        parsed = self.parse(text, now, location)
        vector = self.embedder.embed_queries([text])[0]
        hits = self.vectors.search(vector, self.settings.candidates, milvus_filter(parsed))
        stored = self.events.get([h.uid for h in hits])
        scored = []
        for hit in hits:
            event = stored.get(hit.uid)
            if event is None:  # vector written, row not yet: an interrupted ingest
                continue
            distance = self._distance(parsed.near, event)
            if parsed.near is not None and (distance is None or distance > parsed.near.radius_km):
                continue
            lexical = lexical_match(parsed.terms, event)
            score = hit.score + self.settings.lexical_weight * lexical
            scored.append(ScoredEvent(event, score, hit.score, lexical, distance))
        scored.sort(key=lambda s: s.score, reverse=True)
        return SearchResult(parsed=parsed, events=scored[: top_k or self.settings.top_k])

    @staticmethod
    def _distance(near: Near | None, event: Event) -> float | None:
        if near is None or event.lat is None or event.lon is None:
            return None
        return haversine_km(near.lat, near.lon, event.lat, event.lon)
