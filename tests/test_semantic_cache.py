"""The answer cache on the real app: paraphrases hit, other slots and changed events miss;
with `cache_verify`, a hit that would cite other events than a fresh search is a miss."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from retrieval.event_store import EventStore
from tests.conftest_api import REDIS_URL, metric_samples, redis_prefix
from tests.conftest_memory import JAZZ, app_client, ask, cited

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data_dir(ingested: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the ingested data: a test here changes an event."""
    target = tmp_path_factory.mktemp("cache") / "data"
    shutil.copytree(ingested, target)
    return target


@pytest.fixture(scope="module")
def client(data_dir: Path) -> Iterator[TestClient]:
    with redis_prefix() as prefix, app_client(
        data_dir, copy=False, memory_redis_url=REDIS_URL, memory_key_prefix=prefix,
        cache_enabled=True, cache_data_version_refresh_s=0,
    ) as c:  # fmt: skip
        yield c


@pytest.fixture(scope="module")
def verifying(ingested: Path) -> Iterator[tuple[TestClient, str]]:
    with redis_prefix() as prefix, app_client(
        ingested, memory_redis_url=REDIS_URL, memory_key_prefix=prefix, cache_enabled=True,
        cache_verify=True,
    ) as c:  # fmt: skip
        yield c, prefix


def _stage_count(client: TestClient, stage: str) -> float:
    return metric_samples(client.get("/metrics").text)[
        f"puls_stage_duration_seconds_count{{stage={stage}}}"
    ]


def _hits(client: TestClient, result: str = "hit") -> float:
    return metric_samples(client.get("/metrics").text)[
        f"puls_cache_requests_total{{result={result}}}"
    ]


def test_a_paraphrase_hits_with_the_same_answer_and_citations(client: TestClient) -> None:
    first = ask(client, JAZZ)
    before = _hits(client)
    again = ask(client, "Des concerts de jazz à Paris en juin 2025")
    assert first.headers["x-puls-cache"] == "miss" and again.headers["x-puls-cache"] == "hit"
    assert cited(again) == cited(first)
    assert (
        again.json()["choices"][0]["message"]["content"]
        == (first.json()["choices"][0]["message"]["content"])
    )
    assert _hits(client) == before + 1


def test_another_city_month_or_theme_never_gets_the_cached_answer(client: TestClient) -> None:
    ask(client, JAZZ)
    assert ask(client, "Du théâtre à Paris en juin 2025 ?").headers["x-puls-cache"] == "miss"
    for other in (
        "Un concert de jazz à Lyon en juin 2025 ?",
        "Un concert de jazz à Paris en juillet 2025 ?",
    ):
        assert ask(client, other).headers["x-puls-cache"] == "miss", other


def test_changed_events_invalidate_the_cache(client: TestClient, data_dir: Path) -> None:
    first = ask(client, "Du jazz à Paris en juin 2025, s'il vous plaît")
    assert (
        ask(client, "Du jazz à Paris en juin 2025, s'il vous plaît").headers["x-puls-cache"]
        == "hit"
    )
    store = EventStore(f"sqlite:///{data_dir / 'puls.db'}")
    uid = cited(first)[0]
    event = store.get([uid])[uid]
    store.upsert([replace(event, title=event.title + " (complet)")])
    store.close()
    after = ask(client, "Du jazz à Paris en juin 2025, s'il vous plaît")
    assert after.headers["x-puls-cache"] == "miss"
    assert "(complet)" in after.json()["choices"][0]["message"]["content"]


def test_verified_hits_cite_what_a_fresh_search_cites(
    verifying: tuple[TestClient, str],
) -> None:
    client, _prefix = verifying
    first = ask(client, JAZZ)
    again = ask(client, JAZZ)
    assert first.headers["x-puls-cache"] == "miss" and again.headers["x-puls-cache"] == "hit"
    assert cited(again) == cited(first)
    content = again.json()["choices"][0]["message"]["content"]
    assert content == first.json()["choices"][0]["message"]["content"]


def test_a_hit_that_would_cite_other_events_is_answered_afresh(
    verifying: tuple[TestClient, str],
) -> None:
    """A paraphrase with the same theme words but another dense text ("jazz concert", not
    "concert jazz") may find other events: the stored answer is made to cite other events,
    the verified lookup refuses it, answers afresh and stores that."""
    client, prefix = verifying
    ask(client, "Un concert de jazz à Paris en juin 2025, un soir ?")
    question = "Du jazz en concert à Paris en juin 2025, un soir ?"
    store = redis.Redis.from_url(REDIS_URL)
    for key in store.scan_iter(f"{prefix}:cache:*"):
        for field, raw in store.hgetall(key).items():
            entry = json.loads(raw)
            entry["citations"] = list(reversed(entry["citations"]))
            store.hset(key, field, json.dumps(entry))
    store.close()
    before = _hits(client, "mismatch")
    refused = ask(client, question)
    fresh = cited(refused)
    assert refused.headers["x-puls-cache"] == "miss" and len(fresh) > 1
    assert _hits(client, "mismatch") == before + 1
    again = ask(client, question)  # `ask` waits for the fresh answer's cache write
    assert again.headers["x-puls-cache"] == "hit" and cited(again) == fresh


def test_a_hit_from_the_same_search_is_served_without_searching(
    verifying: tuple[TestClient, str],
) -> None:
    """Same slots and dense text ("Des expositions" = "Une exposition" once plurals and
    stopwords are gone): the search would be the same, so the verified cache skips it."""
    client, _prefix = verifying
    first = ask(client, "Une exposition à Paris en juin 2025 ?")
    searches = _stage_count(client, "retrieve")
    again = ask(client, "Des expositions à Paris en juin 2025")
    assert first.headers["x-puls-cache"] == "miss" and again.headers["x-puls-cache"] == "hit"
    assert cited(again) == cited(first)
    assert _stage_count(client, "retrieve") == searches
