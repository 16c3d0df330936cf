"""A small key-value store for session memory, the semantic cache and recent requests.

The same pattern as `serving/budget.py`: one protocol, an in-process implementation for the
embedded profile and tests, a Redis one shared by replicas. Values are bytes; every write
takes a time to live, so nothing here outlives its purpose. Hashes hold a cache bucket's
entries, sets index what belongs to a user (for erasure).

Stores (one contract, `tests/test_session_memory.py`)::

    KeyValueStore      protocol
    ├── MemoryKV       this process only
    └── RedisKV        shared by every replica (`PULS_MEMORY_REDIS_URL` or `PULS_REDIS_URL`)

`Guarded` wraps either: a failing store is skipped for `retry_s`, then tried again, so a Redis
outage degrades answers (no memory, no cache) instead of failing them, and recovers alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

log = logging.getLogger(__name__)
REDIS_TIMEOUT_S = 0.5  # memory is an optimisation: never wait long for it
RETRY_AFTER_FAILURE_S = 2.0
T = TypeVar("T")


class KeyValueStore(Protocol):
    """Expiring bytes, hashes and sets. Missing or expired keys read as empty."""

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def delete(self, *keys: str) -> None: ...

    async def hset(self, key: str, field: str, value: bytes, ttl_s: float) -> None:
        """Set one field and (re)set the whole hash's time to live."""
        ...

    async def hgetall(self, key: str) -> dict[str, bytes]: ...

    async def hdel(self, key: str, *fields: str) -> None: ...

    async def sadd(self, key: str, member: str, ttl_s: float) -> None:
        """Add a member and (re)set the set's time to live."""
        ...

    async def smembers(self, key: str) -> set[str]: ...

    async def check_health(self) -> None:
        """Raise unless the store answers."""
        ...

    async def aclose(self) -> None: ...


class MemoryKV:
    """Dicts with expiry times. Safe on one event loop: no await between read and write."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._data: dict[str, tuple[object, float]] = {}

    def _live(self, key: str) -> object | None:
        value, expires = self._data.get(key, (None, 0.0))
        if expires <= self._clock():
            self._data.pop(key, None)
            return None
        return value

    def _put(self, key: str, value: object, ttl_s: float) -> None:
        self._data[key] = (value, self._clock() + ttl_s)

    async def get(self, key: str) -> bytes | None:
        value = self._live(key)
        return value if isinstance(value, bytes) else None

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        self._put(key, value, ttl_s)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key, None)

    async def hset(self, key: str, field: str, value: bytes, ttl_s: float) -> None:
        current = self._live(key)
        fields = dict(current) if isinstance(current, dict) else {}
        fields[field] = value
        self._put(key, fields, ttl_s)

    async def hgetall(self, key: str) -> dict[str, bytes]:
        value = self._live(key)
        return dict(value) if isinstance(value, dict) else {}

    async def hdel(self, key: str, *fields: str) -> None:
        value = self._live(key)
        if isinstance(value, dict):
            for field in fields:
                value.pop(field, None)

    async def sadd(self, key: str, member: str, ttl_s: float) -> None:
        current = self._live(key)
        members = set(current) if isinstance(current, set) else set()
        self._put(key, members | {member}, ttl_s)

    async def smembers(self, key: str) -> set[str]:
        value = self._live(key)
        return set(value) if isinstance(value, set) else set()

    async def check_health(self) -> None:
        return None

    async def aclose(self) -> None:
        self._data.clear()


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ms(ttl_s: float) -> int:
    return max(1, int(ttl_s * 1000))


class RedisKV:
    """The same operations on Redis; each write and its expiry go in one MULTI."""

    def __init__(self, url: str, timeout_s: float = REDIS_TIMEOUT_S) -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    async def get(self, key: str) -> bytes | None:
        value = await self._redis.get(key)
        return _bytes(value) if value is not None else None

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._redis.set(key, value, px=_ms(ttl_s))

    async def delete(self, *keys: str) -> None:
        if keys:
            await self._redis.delete(*keys)

    async def hset(self, key: str, field: str, value: bytes, ttl_s: float) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, field, value)
            pipe.pexpire(key, _ms(ttl_s))
            await pipe.execute()

    async def hgetall(self, key: str) -> dict[str, bytes]:
        raw = await self._redis.hgetall(key)
        return {_text(k): _bytes(v) for k, v in raw.items()}

    async def hdel(self, key: str, *fields: str) -> None:
        if fields:
            await self._redis.hdel(key, *fields)

    async def sadd(self, key: str, member: str, ttl_s: float) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(key, member)
            pipe.pexpire(key, _ms(ttl_s))
            await pipe.execute()

    async def smembers(self, key: str) -> set[str]:
        return {_text(m) for m in await self._redis.smembers(key)}

    async def check_health(self) -> None:
        await self._redis.ping()

    async def aclose(self) -> None:
        await self._redis.aclose()


class Guarded:
    """Runs store calls, turning a failure into a fallback value and a skip window.

    `on_change(available)` is called when the store goes down or comes back (metrics, logs).
    """

    def __init__(
        self,
        store: KeyValueStore,
        on_change: Callable[[bool], None] = lambda available: None,
        retry_s: float = RETRY_AFTER_FAILURE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._on_change = on_change
        self._retry_s = retry_s
        self._clock = clock
        self._down_until = 0.0
        self.available = True

    async def call(self, op: Callable[[KeyValueStore], Awaitable[T]], fallback: T) -> T:
        """`op(store)`, or `fallback` while the store is down or when it fails now."""
        if not self.available and self._clock() < self._down_until:
            return fallback
        try:
            result = await op(self.store)
        except Exception as exc:
            self._mark(False, exc)
            return fallback
        self._mark(True)
        return result

    async def probe(self) -> bool:
        """Check the store now (readiness), whatever the skip window says."""
        try:
            await self.store.check_health()
        except Exception as exc:
            self._mark(False, exc)
            return False
        self._mark(True)
        return True

    def _mark(self, available: bool, exc: Exception | None = None) -> None:
        if not available:
            self._down_until = self._clock() + self._retry_s
        if available == self.available:
            return
        self.available = available
        if available:
            log.warning("memory store is back: session memory and cache resumed")
        else:
            log.warning("memory store unavailable (%s): answering without memory or cache", exc)
        self._on_change(available)


def open_kv(redis_url: str | None) -> KeyValueStore:
    """Redis when configured (shared by replicas), else this process's memory."""
    return RedisKV(redis_url) if redis_url else MemoryKV()
