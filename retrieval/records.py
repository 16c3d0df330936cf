"""The normalised event: what ingest writes and retrieval reads."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from retrieval.text import fold

PASSAGE_MAX_CHARS = 400
"""e5-small embeds short texts ~15x faster than long ones (measured): the passage is capped."""


@dataclass(frozen=True)
class Chunking:
    """How an event becomes vector-store entities (docs/adr/0003-chunking.md).

    Chunk 0 is the event passage (title, keywords, place, short description). Chunks 1..k
    are windows of `words` words of the long description, `overlap` words shared with the
    previous window, each prefixed with the title; at most `max_chunks` of them per event.
    `dense_penalty` is subtracted from a description chunk's cosine when chunks compete for
    their event's dense score (a query-time knob: changing it needs no re-embedding).
    """

    words: int = 120
    overlap: int = 30
    max_chunks: int = 1
    dense_penalty: float = 0.01

    def __post_init__(self) -> None:
        if self.words < 1 or not 0 <= self.overlap < self.words or self.max_chunks < 0:
            raise ValueError(f"invalid chunking {self}: need words >= 1, 0 <= overlap < words")

    @property
    def key(self) -> str:
        """What the stored chunks depend on: a change means re-embedding (not dense_penalty)."""
        return f"w{self.words}o{self.overlap}c{self.max_chunks}"


def _canonical(value: object) -> str:
    """Datetimes as UTC ISO strings: the same instant hashes the same in any time zone."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


@dataclass(frozen=True)
class Event:
    """One cultural event, facts only. Times are timezone-aware; `end` is the last session's end."""

    uid: str
    source: str
    title: str
    start: datetime
    end: datetime
    description: str = ""
    long_description: str = ""
    keywords: tuple[str, ...] = ()
    venue: str = ""
    address: str = ""
    city: str = ""
    postal_code: str = ""
    lat: float | None = None
    lon: float | None = None
    url: str = ""
    updated_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON of the facts (sorted keys), so re-ingest is a no-op.

        `source` and `updated_at` are left out: the same facts from another export or a
        touched-but-unchanged record must not trigger a re-embedding.
        """
        facts = asdict(self)
        for volatile in ("source", "updated_at", "extra"):
            facts.pop(volatile)
        canonical = json.dumps(facts, sort_keys=True, default=_canonical, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def passage(self) -> str:
        """The short text that is embedded: title, keywords, place, start of the description."""
        parts = [self.title]
        if self.keywords:
            parts.append(", ".join(self.keywords))
        if self.venue or self.city:
            parts.append(" ".join(p for p in (self.venue, self.city) if p))
        parts.append(self.description)
        return ". ".join(p for p in parts if p)[:PASSAGE_MAX_CHARS]

    def description_chunks(self, chunking: Chunking) -> list[str]:
        """The long description as overlapping word windows, each prefixed by the title;
        none when it is empty or already inside the passage."""
        words = self.long_description.split()
        if (
            not words
            or chunking.max_chunks == 0
            or fold(self.long_description) in fold(self.passage())
        ):
            return []
        step = chunking.words - chunking.overlap
        # a window starts only where it brings words the previous one did not have
        starts = range(0, max(len(words) - chunking.overlap, 1), step)
        return [
            f"{self.title}. " + " ".join(words[start : start + chunking.words])
            for start in list(starts)[: chunking.max_chunks]
        ]

    def chunk_texts(self, chunking: Chunking) -> list[str]:
        """Everything embedded for this event: the passage (chunk 0), then its description
        chunks (1..k)."""
        return [self.passage(), *self.description_chunks(chunking)]
