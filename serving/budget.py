"""Daily token budgets, global and per `user`, over a small counter store.

Two thresholds per scope (settings, each optional):

    budget    spent >= budget  → answers degrade: small model, fewer tokens and events
    hard cap  spent >= cap     → 429 with `Retry-After` (seconds to the next UTC midnight)

Tokens are charged after an answer (prompt + completion), so one answer may overshoot a
limit; the next request sees it. Days are UTC days: counters expire at midnight UTC.

Stores (one contract, `tests/test_budget.py`)::

    BudgetStore          protocol: get / add with a TTL / check_health / aclose
    ├── MemoryBudgetStore   this process only (tests, a single replica)
    └── RedisBudgetStore    shared by every replica (`PULS_REDIS_URL`)

Errors::

    BudgetExhausted   a hard cap is spent; carries `scope` and `retry_after_s`
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

REDIS_TIMEOUT_S = 2.0
KEY_GRACE_S = 3600  # a day's key outlives its day by an hour, then Redis drops it


class BudgetStore(Protocol):
    """Integer counters that expire. Both calls must be atomic per key."""

    async def get(self, key: str) -> int:
        """The counter's value; 0 when absent or expired."""
        ...

    async def add(self, key: str, amount: int, ttl_s: float) -> int:
        """Add `amount`, (re)set the key's time to live, return the new value."""
        ...

    async def check_health(self) -> None:
        """Raise unless the store answers."""
        ...

    async def aclose(self) -> None: ...


class MemoryBudgetStore:
    """Counters in a dict. Safe on one event loop: no await between read and write."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._counters: dict[str, tuple[int, float]] = {}

    async def get(self, key: str) -> int:
        value, expires = self._counters.get(key, (0, 0.0))
        if expires <= self._clock():
            self._counters.pop(key, None)
            return 0
        return value

    async def add(self, key: str, amount: int, ttl_s: float) -> int:
        total = await self.get(key) + amount
        self._counters[key] = (total, self._clock() + ttl_s)
        return total

    async def check_health(self) -> None:
        return None

    async def aclose(self) -> None:
        self._counters.clear()


class RedisBudgetStore:
    """Counters in Redis: INCRBY + PEXPIRE in one MULTI, so replicas share one budget."""

    def __init__(self, url: str) -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )

    async def get(self, key: str) -> int:
        value = await self._redis.get(key)
        return int(value or 0)

    async def add(self, key: str, amount: int, ttl_s: float) -> int:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incrby(key, amount)
            pipe.pexpire(key, max(1, int(ttl_s * 1000)))
            total, _ = await pipe.execute()
        return int(total)

    async def check_health(self) -> None:
        await self._redis.ping()

    async def aclose(self) -> None:
        await self._redis.aclose()


class BudgetExhausted(Exception):
    """A daily hard cap is spent: refuse until `retry_after_s` from now."""

    def __init__(self, scope: str, retry_after_s: int) -> None:
        super().__init__(f"daily token cap spent ({scope})")
        self.scope = scope
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Limits:
    """Daily token limits; None = no limit of that kind."""

    budget: int | None = None
    budget_per_user: int | None = None
    hard_cap: int | None = None
    hard_cap_per_user: int | None = None


@dataclass(frozen=True)
class BudgetCheck:
    """Whether the answer must degrade, and which budget (`global` or `user`) says so."""

    degraded: bool
    scope: str | None = None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TokenBudget:
    """Checks before an answer and charges after it, against today's counters."""

    def __init__(
        self,
        store: BudgetStore,
        limits: Limits,
        prefix: str = "puls:budget",
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.store = store
        self.limits = limits
        self.prefix = prefix
        self._clock = clock

    def _keys(self, user: str | None) -> dict[str, str]:
        day = self._clock().strftime("%Y-%m-%d")
        keys = {"global": f"{self.prefix}:{day}:global"}
        if user:
            keys["user"] = f"{self.prefix}:{day}:user:{user}"
        return keys

    def _seconds_to_midnight(self) -> int:
        now = self._clock()
        midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return max(1, int((midnight - now).total_seconds()))

    @property
    def active(self) -> bool:
        return any(v is not None for v in vars(self.limits).values())

    async def check(self, user: str | None) -> BudgetCheck:
        """Raise `BudgetExhausted` past a hard cap; say `degraded` past a budget."""
        if not self.active:
            return BudgetCheck(degraded=False)
        spent = {scope: await self.store.get(key) for scope, key in self._keys(user).items()}
        caps = {"global": self.limits.hard_cap, "user": self.limits.hard_cap_per_user}
        budgets = {"global": self.limits.budget, "user": self.limits.budget_per_user}
        for scope, value in spent.items():
            cap = caps[scope]
            if cap is not None and value >= cap:
                raise BudgetExhausted(scope, self._seconds_to_midnight())
        for scope, value in spent.items():
            budget = budgets[scope]
            if budget is not None and value >= budget:
                return BudgetCheck(degraded=True, scope=scope)
        return BudgetCheck(degraded=False)

    async def charge(self, user: str | None, tokens: int) -> None:
        if not self.active or tokens <= 0:
            return
        ttl = self._seconds_to_midnight() + KEY_GRACE_S
        for key in self._keys(user).values():
            await self.store.add(key, tokens, ttl)


def open_budget_store(redis_url: str | None) -> BudgetStore:
    """Redis when configured (shared by replicas), else this process's memory."""
    return RedisBudgetStore(redis_url) if redis_url else MemoryBudgetStore()
