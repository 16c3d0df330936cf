"""The normalised event: what ingest writes and retrieval reads."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

PASSAGE_MAX_CHARS = 400
"""e5-small embeds short texts ~15x faster than long ones (measured): the passage is capped."""


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
