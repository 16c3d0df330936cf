"""Outages: a Redis of the test's own is stopped and restarted, a throwaway PostgreSQL
database is dropped and recreated; chat keeps answering and the features come back alone."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest_memory import (
    JAZZ,
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
