"""Outages: a Redis of the test's own is stopped and restarted, a throwaway PostgreSQL
database is dropped and recreated; chat keeps answering and the features come back alone."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis as redis_client
from fastapi.testclient import TestClient
from httpx import Response

from tests.conftest_memory import (
    JAZZ,
    NOW,
    app_client,
    ask,
    create_database,
    drop_database,
    postgres_database,
    redis_server,
)

pytestmark = pytest.mark.integration


def _metric(text: str, name: str) -> float:
    return float(next(x for x in text.splitlines() if x.startswith(name)).split()[-1])


def test_redis_down_then_back(ingested: Path) -> None:
    with (
        redis_server() as redis,
        app_client(ingested, memory_redis_url=redis.url, cache_enabled=True) as client,
    ):
        assert ask(client, JAZZ).headers["x-puls-cache"] == "miss"
        redis.stop()
        down = ask(client, JAZZ)
        assert down.json()["citations"] and "x-puls-cache" not in down.headers
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["degraded"] == ["memory"]
        metrics = client.get("/metrics").text
        assert _metric(metrics, "puls_memory_store_up") == 0
        assert _metric(metrics, 'puls_cache_requests_total{result="bypass"}') >= 1
        redis.start()
        time.sleep(2.1)  # past the skip window after a failure
        assert ask(client, JAZZ).headers["x-puls-cache"] == "miss", "an empty Redis: a miss"
        assert ask(client, JAZZ).headers["x-puls-cache"] == "hit"
        assert client.get("/readyz").json()["degraded"] == []
        assert _metric(client.get("/metrics").text, "puls_memory_store_up") == 1


def _chat(client: TestClient, user: str) -> Response:
    body = {"model": "puls", "messages": [{"role": "user", "content": JAZZ}], "user": user,
            "puls": {"now": NOW}}  # fmt: skip
    return client.post("/v1/chat/completions", json=body)


def test_budgets_on_a_down_redis_count_per_replica_and_recover(ingested: Path) -> None:
    """Budgets and memory share one Redis; it is down at start, comes back, goes down again."""
    with redis_server() as redis:
        redis.stop()
        with app_client(ingested, redis_url=redis.url, daily_token_hard_cap_per_user=1) as client:
            ready = client.get("/readyz")  # app_client waited for a 200: warm-up did not fail
            assert set(ready.json()["degraded"]) == {"memory", "budget"}
            first = _chat(client, "ana")
            assert first.status_code == 200 and first.json()["citations"]
            assert "budget_store" in first.headers["x-puls-degraded"].split(",")
            refused = _chat(client, "ana")
            assert refused.status_code == 429, "the cap still holds, counted by this replica"
            metrics = client.get("/metrics").text
            assert _metric(metrics, 'puls_degraded_answers_total{reason="budget_store"}') >= 1
            redis.start()
            time.sleep(2.1)  # past the skip window after a failure
            back = _chat(client, "bob")
            assert back.status_code == 200 and "x-puls-degraded" not in back.headers
            assert client.get("/readyz").json()["degraded"] == []
            keys = redis_client.Redis.from_url(redis.url).keys("puls:budget:*")
            assert any(k.endswith(b":user:ana") for k in keys), "ana's outage spend was synced"
            assert any(k.endswith(b":user:bob") for k in keys)
            assert _chat(client, "ana").status_code == 429


def test_postgres_down_then_back(ingested: Path) -> None:
    with postgres_database() as (name, url), app_client(
        ingested, profile_database_url=url
    ) as client:  # fmt: skip
        profile = {"user": "zoe", "cities": ["Paris"], "themes": ["jazz"]}
        assert client.put("/v1/users/zoe/profile", json=profile).status_code == 200
        drop_database(name)
        down = client.get("/v1/users/zoe/profile", params={"user": "zoe"})
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "profile_store_unavailable"
        assert ask(client, JAZZ, user="zoe").json()["citations"], "chat stopped answering"
        create_database(name)
        assert client.put("/v1/users/zoe/profile", json=profile).status_code == 200
        back = client.get("/v1/users/zoe/profile", params={"user": "zoe"})
        assert back.status_code == 200 and back.json()["cities"] == ["Paris"]
