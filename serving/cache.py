"""Semantic answer cache: a paraphrase of a recent question, with the same slots, gets the same
answer without retrieval or generation.

An entry is found in two steps:

1. Its **bucket**, an exact key: the resolved slots (place, radius, time window, language,
   top-k, degraded or not, the user's profile version) and the **data version** (a digest of
   every stored event's content hash). A different city or window, another profile, or any
   change to the events lands in another bucket, so an answer is never served across slots
   or after ingest changed the events.
2. Inside the bucket, the **question**, as the search embeds it (`Retriever.dense_text`: by
   default the content words in one form, "Des concerts de jazz ?" → "concert jazz"): the
   same theme words (stemmed, stopwords dropped) hit at once; otherwise the question's e5
   embedding must reach `cache_similarity` (cosine) against a stored one whose theme words
   overlap (Jaccard >= `MIN_THEME_OVERLAP`). The overlap guard is needed: with the same place
   and month in both, e5 puts "du théâtre" and "des expositions" above 0.95 (measured by
   `benchmarks/cache_replay.py`), so similarity alone would serve the wrong theme.

A hit whose stored question is the same text ("same") came from the same search: same slots,
same dense text, same theme words, same data, so it cites what a fresh search would. Other
hits ("themes", "semantic") may not; with `cache_verify` the service checks those against a
fresh search (docs/adr/0006).

Entries live `cache_ttl_s` (short: events start and end); a bucket keeps at most
`MAX_ENTRIES_PER_BUCKET`. Keys::

    {prefix}:cache:{bucket digest}        hash: entry id → JSON entry
    {prefix}:user:{user}:cache            set of "bucket|entry id" (erasure)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np

from retrieval.event_store import EventStore
from retrieval.query import ParsedQuery
from serving.memory.kv import Guarded, KeyValueStore

MAX_ENTRIES_PER_BUCKET = 32
MIN_THEME_OVERLAP = 0.5
WINDOW_GRANULARITY_S = 600  # "from now on" starts at `now`: floor it so a bucket lasts a while
LOCATION_DECIMALS = 3  # about 100 m


@dataclass(frozen=True)
class CachedAnswer:
    """A finished answer as the client saw it."""

    content: str
    citations: list[dict[str, object]]
    model: str
    # how it was found: "same" (the same slots and dense text: the same search, so the same
    # citations), "themes" (the same theme words) or "semantic" (a similar question)
    kind: str = "same"


def _floor(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    seconds = int(moment.timestamp())
    return seconds - seconds % WINDOW_GRANULARITY_S


def slot_key(parsed: ParsedQuery, **extra: object) -> dict[str, object]:
    """The resolved slots that must match exactly, plus `extra` (top-k, profile version...)."""
    near = parsed.near
    return {
        "cities": sorted(parsed.cities),
        "areas": sorted(parsed.areas),
        "departments": sorted(parsed.departments),
        "near": None
        if near is None
        else [round(near.lat, LOCATION_DECIMALS), round(near.lon, LOCATION_DECIMALS),
              near.radius_km],
        "window": [_floor(parsed.window.start), _floor(parsed.window.end)],
        **extra,
    }  # fmt: skip


def _digest(value: object) -> str:
    canonical = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class DataVersion:
    """A digest of every event's content hash, recomputed at most every `refresh_s`.

    Ingest changes a content hash whenever an event changes, and adds or removes uids; the
    digest changes with any of them. Reading uid + hash of ~5k rows takes a few ms.
    """

    def __init__(self, events: EventStore, refresh_s: float) -> None:
        self.events = events
        self.refresh_s = refresh_s
        self._value: str | None = None
        self._at = 0.0

    def compute(self) -> str:
        digest = hashlib.sha256()
        for uid, content_hash in sorted(self.events.hashes().items()):
            digest.update(f"{uid}:{content_hash}\n".encode())
        return digest.hexdigest()[:16]

    async def current(self) -> str:
        if self._value is None or time.monotonic() - self._at >= self.refresh_s:
            self._value = await asyncio.to_thread(self.compute)
            self._at = time.monotonic()
        return self._value


class SemanticCache:
    """Lookup and store of answers through a guarded store (an outage = every request a miss)."""

    def __init__(
        self,
        store: Guarded,
        prefix: str,
        ttl_s: float,
        threshold: float,
        embed: Callable[[str], np.ndarray],
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.threshold = threshold
        self._embed = embed

    def bucket(self, slots: dict[str, object], data_version: str) -> str:
        return f"{self.prefix}:cache:{_digest({'slots': slots, 'data': data_version})}"

    async def lookup(
        self, bucket: str, question: str, themes: tuple[str, ...]
    ) -> CachedAnswer | None:
        """The stored answer for these theme words, else the most similar question's."""
        empty: dict[str, bytes] = {}
        entries = await self.store.call(lambda kv: kv.hgetall(bucket), empty)
        live = {k: json.loads(v) for k, v in entries.items()}
        live = {k: e for k, e in live.items() if e["expires"] > time.time()}
        if not live:
            return None
        exact = live.get(_digest(sorted(themes)))
        if exact is not None:
            return _answer(exact, "same" if exact.get("question") == question else "themes")
        vector = await asyncio.to_thread(self._embed, question)
        best, score = None, -1.0
        for entry in live.values():
            if _overlap(themes, entry.get("themes", [])) < MIN_THEME_OVERLAP:
                continue
            similarity = float(np.dot(vector, np.asarray(entry["vector"], dtype=np.float32)))
            if similarity > score:
                best, score = entry, similarity
        return _answer(best, "semantic") if best is not None and score >= self.threshold else None

    async def put(
        self,
        bucket: str,
        question: str,
        themes: tuple[str, ...],
        answer: CachedAnswer,
        user: str | None,
    ) -> None:
        """Store an answer (embedding the question here, off the request's path)."""
        vector = await asyncio.to_thread(self._embed, question)
        entry_id = _digest(sorted(themes))
        entry = {**asdict(answer), "vector": [round(float(x), 6) for x in vector],
                 "question": question, "themes": sorted(themes),
                 "expires": time.time() + self.ttl_s, "user": user}  # fmt: skip

        async def write(kv: KeyValueStore) -> None:
            current = await kv.hgetall(bucket)
            if len(current) >= MAX_ENTRIES_PER_BUCKET and entry_id not in current:
                oldest = min(current, key=lambda k: json.loads(current[k])["expires"])
                await kv.hdel(bucket, oldest)
            await kv.hset(bucket, entry_id, json.dumps(entry).encode(), self.ttl_s)
            if user:
                await kv.sadd(self._user_key(user), f"{bucket}|{entry_id}", self.ttl_s)

        await self.store.call(write, None)

    def _user_key(self, user: str) -> str:
        return f"{self.prefix}:user:{user}:cache"

    async def forget_user(self, user: str) -> int:
        """Delete the entries `user`'s requests stored; returns how many."""

        async def erase(kv: KeyValueStore) -> int:
            members = await kv.smembers(self._user_key(user))
            for member in members:
                bucket, _, entry_id = member.partition("|")
                await kv.hdel(bucket, entry_id)
            await kv.delete(self._user_key(user))
            return len(members)

        return await self.store.call(erase, 0)


def _overlap(a: tuple[str, ...], b: object) -> float:
    """Jaccard overlap of two sets of theme words (1.0 when both are empty)."""
    left, right = set(a), set(b) if isinstance(b, list) else set()
    union = left | right
    return len(left & right) / len(union) if union else 1.0


def _answer(entry: dict[str, object], kind: str) -> CachedAnswer:
    citations = entry["citations"]
    assert isinstance(citations, list)
    return CachedAnswer(str(entry["content"]), citations, str(entry["model"]), kind)
