"""Daily token budgets, global and per `user`, over a small counter store.

Two thresholds per scope (settings, each optional):

    budget    spent >= budget  → answers degrade: small model, fewer tokens and events
    hard cap  spent >= cap     → 429 with `Retry-After` (seconds to the next UTC midnight)

Tokens are charged after an answer (prompt + completion), so one answer may overshoot a
limit; the next request sees it. Days are UTC days: counters expire at midnight UTC.

Stores (one contract, `tests/test_budget.py`)::

    BudgetStore          protocol: get / add with a TTL / check_health / aclose
    ├── MemoryBudgetStore   this process only (tests, a single replica)
    ├── RedisBudgetStore    shared by every replica (`PULS_REDIS_URL`)
    └── FallbackBudgetStore the shared store, degrading to this process's counters

The shared Redis is also the memory store: its outage must not stop chat. While it fails,
`FallbackBudgetStore` counts in this process (every charge is mirrored there), so limits still
hold per replica; answers say `x-puls-degraded: budget_store`, `/readyz` lists "budget" under
"degraded", and the outage's charges are added to Redis when it answers again.

Errors::

    BudgetExhausted   a hard cap is spent; carries `scope` and `retry_after_s`
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

log = logging.getLogger(__name__)
REDIS_TIMEOUT_S = 2.0
KEY_GRACE_S = 3600  # a day's key outlives its day by an hour, then Redis drops it
PRUNE_ABOVE_KEYS = 10_000
RETRY_AFTER_FAILURE_S = 2.0  # while the shared store is down, try it again this often


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
        if len(self._counters) > PRUNE_ABOVE_KEYS:  # yesterday's users, never read again
            now = self._clock()
            self._counters = {k: v for k, v in self._counters.items() if v[1] > now}
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


class FallbackBudgetStore:
    """The shared store, or this process's counters while the shared store fails.

    Every `add` also lands in the local counters, so when the shared store goes down the
    local ones already hold what this replica spent today. After a failure the shared store
    is skipped for `retry_s` (no timeout per request), then tried again. Charges made during
    the outage are added to the shared store once it answers (a restarted, empty Redis then
    knows this replica's outage spend), and `get` never reads less than the local count.
    `check_health` raises while the shared store is down (`probe()` says yes or no); `get`
    and `add` never raise for it.
    """

    def __init__(
        self,
        shared: BudgetStore,
        retry_s: float = RETRY_AFTER_FAILURE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shared = shared
        self.local = MemoryBudgetStore(clock)
        self.available = True
        self._retry_s = retry_s
        self._clock = clock
        self._down_until = 0.0
        self._unsynced: dict[str, tuple[int, float]] = {}  # key → (amount, ttl) not in shared

    def _skipping(self) -> bool:
        return not self.available and self._clock() < self._down_until

    async def get(self, key: str) -> int:
        """The shared count, or the local one if larger (a Redis restarted empty)."""
        local = await self.local.get(key)
        if not self._skipping():
            try:
                shared = await self.shared.get(key)
                if await self._mark_up():  # just back: read again, the outage's charges synced
                    shared = await self.shared.get(key)
            except Exception as exc:
                self._mark_down(exc)
            else:
                return max(shared, local)
        return local

    async def add(self, key: str, amount: int, ttl_s: float) -> int:
        local = await self.local.add(key, amount, ttl_s)
        if not self._skipping():
            try:
                await self._mark_up()
                total = await self.shared.add(key, amount, ttl_s)
            except Exception as exc:
                self._mark_down(exc)
            else:
                return max(total, local)
        self._keep_unsynced(key, amount, ttl_s)
        return local

    def _keep_unsynced(self, key: str, amount: int, ttl_s: float) -> None:
        pending, _ = self._unsynced.get(key, (0, ttl_s))
        self._unsynced[key] = (pending + amount, ttl_s)

    async def check_health(self) -> None:
        await self.shared.check_health()

    async def probe(self) -> bool:
        """Whether the shared store answers now (readiness), whatever the skip window says."""
        try:
            await self.shared.check_health()
        except Exception as exc:
            self._mark_down(exc)
            return False
        await self._mark_up()
        return self.available

    def _mark_down(self, exc: Exception) -> None:
        self._down_until = self._clock() + self._retry_s
        if self.available:
            self.available = False
            log.warning("budget store unavailable (%s): counting tokens in this process only", exc)

    async def _mark_up(self) -> bool:
        """Mark the shared store up; True when it was down (the outage's charges synced)."""
        if self.available:
            return False
        self.available = True
        unsynced, self._unsynced = list(self._unsynced.items()), {}
        for i, (key, (amount, ttl_s)) in enumerate(unsynced):
            try:
                await self.shared.add(key, amount, ttl_s)
            except Exception as exc:  # down again at once: keep the rest for the next recovery
                for rest_key, (rest, rest_ttl) in unsynced[i:]:
                    self._keep_unsynced(rest_key, rest, rest_ttl)
                self._mark_down(exc)
                return False
        log.warning("budget store is back: shared token budgets resumed (%d keys synced)",
                    len(unsynced))  # fmt: skip
        return True

    async def aclose(self) -> None:
        await self.shared.aclose()
        await self.local.aclose()


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

    @property
    def counting_locally(self) -> bool:
        """True while the shared store is down and limits hold per replica only."""
        return isinstance(self.store, FallbackBudgetStore) and not self.store.available

    async def probe(self) -> bool:
        """Whether the limits are shared as configured (readiness, warm-up); never raises.

        Without limits the store is never read, so its state does not matter."""
        if not self.active:
            return True
        if isinstance(self.store, FallbackBudgetStore):
            return await self.store.probe()
        try:
            await self.store.check_health()
        except Exception:
            log.exception("budget store unavailable")
            return False
        return True

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
    """Redis when configured (shared by replicas, this process's counters while it is down),
    else this process's memory."""
    return FallbackBudgetStore(RedisBudgetStore(redis_url)) if redis_url else MemoryBudgetStore()
