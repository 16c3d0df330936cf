"""The budget store contract, passed by the in-process store and by the machine's real Redis,
the fallback to this process's counters while Redis is down, and the daily budget policy."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
import redis

from serving.budget import (
    BudgetExhausted,
    BudgetStore,
    FallbackBudgetStore,
    Limits,
    MemoryBudgetStore,
    RedisBudgetStore,
    TokenBudget,
)
from tests.conftest_memory import redis_server

REDIS_URL = "redis://127.0.0.1:6379/0"


class Clock:
    """A settable monotonic clock for the memory store's expiry."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"puls-test:{uuid.uuid4().hex}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{name}*"))
    if keys:
        client.delete(*keys)
    client.close()


async def contract(store: BudgetStore, prefix: str) -> None:
    """What every BudgetStore must do."""
    await store.check_health()
    assert await store.get(f"{prefix}:missing") == 0
    assert await store.add(f"{prefix}:a", 5, ttl_s=60) == 5
    assert await store.add(f"{prefix}:a", 7, ttl_s=60) == 12
    assert await store.get(f"{prefix}:a") == 12
    assert await store.get(f"{prefix}:b") == 0, "keys are independent"
    totals = await asyncio.gather(*(store.add(f"{prefix}:c", 1, ttl_s=60) for _ in range(50)))
    assert sorted(totals) == list(range(1, 51)), "concurrent adds are atomic"
    await store.add(f"{prefix}:short", 3, ttl_s=0.2)
    assert await store.get(f"{prefix}:short") == 3


@pytest.mark.unit
def test_memory_store_honours_the_contract(prefix: str) -> None:
    clock = Clock()
    store = MemoryBudgetStore(clock)

    async def run() -> None:
        await contract(store, prefix)
        clock.now += 0.3
        assert await store.get(f"{prefix}:short") == 0, "expired"
        assert await store.get(f"{prefix}:a") == 12
        await store.aclose()

    asyncio.run(run())


@pytest.mark.integration
def test_redis_store_honours_the_contract(prefix: str) -> None:
    async def run() -> None:
        store = RedisBudgetStore(REDIS_URL)
        try:
            await contract(store, prefix)
            await asyncio.sleep(0.3)
            assert await store.get(f"{prefix}:short") == 0, "expired"
            assert await store.get(f"{prefix}:a") == 12
        finally:
            await store.aclose()

    asyncio.run(run())


@pytest.mark.integration
def test_redis_store_fails_loudly_when_unreachable() -> None:
    async def run() -> None:
        store = RedisBudgetStore("redis://127.0.0.1:1/0")
        try:
            with pytest.raises(redis.exceptions.ConnectionError):
                await store.check_health()
        finally:
            await store.aclose()

    asyncio.run(run())


def fixed_clock(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


NOON = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.unit
def test_budget_degrades_then_refuses_per_user() -> None:
    limits = Limits(budget_per_user=100, hard_cap_per_user=250)
    budget = TokenBudget(MemoryBudgetStore(), limits, "t", clock=fixed_clock(NOON))

    async def run() -> None:
        assert not (await budget.check("ana")).degraded
        await budget.charge("ana", 120)
        check = await budget.check("ana")
        assert check.degraded and check.scope == "user"
        assert not (await budget.check("bob")).degraded, "another user has their own budget"
        await budget.charge("ana", 130)
        with pytest.raises(BudgetExhausted) as excinfo:
            await budget.check("ana")
        assert excinfo.value.scope == "user"
        assert excinfo.value.retry_after_s == 12 * 3600, "until midnight UTC"

    asyncio.run(run())


@pytest.mark.unit
def test_the_global_budget_counts_every_user_and_anonymous_requests() -> None:
    limits = Limits(budget=100, hard_cap=200)
    budget = TokenBudget(MemoryBudgetStore(), limits, "t", clock=fixed_clock(NOON))

    async def run() -> None:
        await budget.charge("ana", 60)
        await budget.charge(None, 60)
        check = await budget.check("bob")
        assert check.degraded and check.scope == "global"
        await budget.charge("bob", 100)
        with pytest.raises(BudgetExhausted):
            await budget.check(None)

    asyncio.run(run())


@pytest.mark.unit
def test_a_new_day_starts_from_zero() -> None:
    moment = [NOON]
    store = MemoryBudgetStore()
    budget = TokenBudget(store, Limits(hard_cap=10), "t", clock=lambda: moment[0])

    async def run() -> None:
        await budget.charge(None, 10)
        with pytest.raises(BudgetExhausted):
            await budget.check(None)
        moment[0] = datetime(2025, 6, 2, 0, 0, 1, tzinfo=UTC)
        assert not (await budget.check(None)).degraded

    asyncio.run(run())


@pytest.mark.unit
def test_no_limits_never_touches_the_store() -> None:
    class Refusing(MemoryBudgetStore):
        async def get(self, key: str) -> int:
            raise AssertionError("an unlimited budget read the store")

    budget = TokenBudget(Refusing(), Limits(), "t")
    assert not budget.active
    assert asyncio.run(budget.check("ana")).degraded is False


@pytest.mark.integration
def test_fallback_counts_locally_while_redis_is_down_then_syncs_back() -> None:
    """A Redis of the test's own is stopped and restarted (empty: no persistence)."""
    clock = Clock()
    with redis_server() as server:
        store = FallbackBudgetStore(RedisBudgetStore(server.url), retry_s=1.0, clock=clock)

        async def run() -> None:
            assert await store.add("k", 5, ttl_s=600) == 5 and store.available
            server.stop()
            assert await store.add("k", 3, ttl_s=600) == 8, "the local mirror knew of the 5"
            assert not store.available and await store.get("k") == 8
            assert not await store.probe()
            with pytest.raises(redis.exceptions.ConnectionError):
                await store.check_health()
            server.start()
            assert await store.get("k") == 8, "inside the skip window: still local"
            clock.now += 1.5
            assert await store.probe() and store.available
            raw = redis.Redis.from_url(server.url)
            assert int(raw.get("k") or 0) == 3, "the outage's charge was added to Redis"
            raw.close()
            assert await store.get("k") == 8, "never less than this replica spent"
            await store.aclose()

        asyncio.run(run())
