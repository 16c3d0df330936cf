"""Session memory: the key-value contract (in-process and Redis), slot carry-over, and the
real app answering a follow-up sent alone with its `session_id`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis
from fastapi.testclient import TestClient

from retrieval.query import parse_query
from serving.memory.kv import KeyValueStore, MemoryKV, RedisKV
from serving.memory.sessions import SessionState
from serving.memory.slots import conversation_query, slots_of
from tests.conftest_api import REDIS_URL, redis_prefix
from tests.conftest_memory import JAZZ, app_client, ask, cited

NOW = datetime(2025, 6, 4, 10, tzinfo=ZoneInfo("Europe/Paris"))
CITIES = ["Valence", "Romans-sur-Isère", "Paris"]


def _carry(*texts: str) -> str:
    turns = [parse_query(t, NOW, cities=CITIES) for t in texts]
    return conversation_query(list(texts), turns)


@pytest.mark.unit
def test_a_follow_up_keeps_place_and_theme_and_changes_the_time() -> None:
    query = _carry("des concerts à Valence ce week-end", "et dimanche soir ?")
    slots = slots_of(parse_query(query, NOW, cities=CITIES))
    assert slots.place == "à Valence" and slots.time == "dimanche soir"
    assert slots.themes == ("concert",)


@pytest.mark.unit
def test_a_new_place_keeps_the_rest() -> None:
    query = _carry(
        "des concerts à Valence ce week-end", "et dimanche soir ?", "plutôt à Romans-sur-Isère"
    )
    slots = slots_of(parse_query(query, NOW, cities=CITIES))
    assert slots.place == "à Romans-sur-Isère" and slots.time == "dimanche soir"
    assert slots.themes == ("concert",), "'plutôt' steers, it is not a theme"


@pytest.mark.unit
def test_a_new_theme_replaces_the_old_and_the_audience_stays() -> None:
    query = _carry("du cirque pour les enfants à Valence", "et du théâtre ?")
    slots = slots_of(parse_query(query, NOW, cities=CITIES))
    assert slots.themes == ("theatr",) and slots.audience == ("enfant",)
    assert slots.place == "à Valence"


async def _contract(kv: KeyValueStore, prefix: str) -> None:
    assert await kv.get(f"{prefix}:a") is None
    await kv.put(f"{prefix}:a", b"1", 60)
    assert await kv.get(f"{prefix}:a") == b"1"
    await kv.put(f"{prefix}:short", b"x", 0.05)
    await kv.hset(f"{prefix}:h", "f", b"v", 60)
    await kv.hset(f"{prefix}:h", "g", b"w", 60)
    await kv.hdel(f"{prefix}:h", "g")
    assert await kv.hgetall(f"{prefix}:h") == {"f": b"v"}
    await kv.sadd(f"{prefix}:s", "m1", 60)
    await kv.sadd(f"{prefix}:s", "m2", 60)
    assert await kv.smembers(f"{prefix}:s") == {"m1", "m2"}
    await kv.delete(f"{prefix}:a", f"{prefix}:s")
    assert await kv.get(f"{prefix}:a") is None and await kv.smembers(f"{prefix}:s") == set()
    await asyncio.sleep(0.2)
    assert await kv.get(f"{prefix}:short") is None, "the TTL was not honoured"
    await kv.check_health()
    await kv.aclose()


@pytest.mark.unit
def test_memory_kv_honours_the_contract() -> None:
    asyncio.run(_contract(MemoryKV(), "t"))


@pytest.mark.integration
def test_redis_kv_honours_the_contract() -> None:
    with redis_prefix() as prefix:
        asyncio.run(_contract(RedisKV(REDIS_URL), prefix))


@pytest.fixture(scope="module")
def client(ingested: Path) -> Iterator[TestClient]:
    with redis_prefix() as prefix, app_client(
        ingested, memory_redis_url=REDIS_URL, memory_key_prefix=prefix, cache_enabled=False
    ) as c:  # fmt: skip
        yield c


@pytest.mark.integration
def test_the_last_message_alone_answers_like_the_whole_history(client: TestClient) -> None:
    session = uuid.uuid4().hex
    ask(client, JAZZ, puls={"session_id": session}, user="ana")
    alone = ask(client, "Et du théâtre ?", puls={"session_id": session}, user="ana")
    history = client.post(
        "/v1/chat/completions",
        json={"model": "puls", "puls": {"now": "2025-06-01T10:00:00+02:00"}, "messages": [
            {"role": "user", "content": JAZZ},
            {"role": "assistant", "content": "Voici des concerts."},
            {"role": "user", "content": "Et du théâtre ?"},
        ]},
    )  # fmt: skip
    assert cited(alone) and cited(alone) == cited(history)
    assert all(c["city"] == "Paris" for c in alone.json()["citations"])


@pytest.mark.integration
def test_another_user_never_reads_the_session(client: TestClient) -> None:
    session = uuid.uuid4().hex
    ask(client, JAZZ, puls={"session_id": session}, user="ana")
    other = ask(client, "Et du théâtre ?", puls={"session_id": session}, user="bob")
    plain = ask(client, "Et du théâtre ?", user="bob")
    assert cited(other) == cited(plain), "bob's answer used ana's session"


@pytest.mark.integration
def test_the_session_keeps_a_window_a_summary_and_what_each_answer_resolved(
    client: TestClient,
) -> None:
    session = uuid.uuid4().hex
    first = ask(client, JAZZ, puls={"session_id": session}, user="ana")
    shown = first.json()["puls"]["session"]
    assert shown["id"] == session and shown["slots"]["place"] == "à Paris"
    assert shown["summary"] == "Vous cherchiez : concert jazz à Paris, en juin 2025"
    chatter = [f"Et encore {i} ?" for i in range(10)]
    messages = [{"role": "user", "content": t} for t in [JAZZ, *chatter, "Et du théâtre ?"]]
    client.post("/v1/chat/completions", json={
        "model": "puls", "messages": messages, "user": "ana",
        "puls": {"now": "2025-06-01T10:00:00+02:00", "session_id": session},
    })  # fmt: skip
    prefix = client.app.state.settings.serving.memory_key_prefix  # type: ignore[attr-defined]
    raw = redis.Redis.from_url(REDIS_URL).get(f"{prefix}:session:{session}")
    state = SessionState.from_json(raw or b"{}")
    assert state.turns == [*chatter[-5:], "Et du théâtre ?"], "not a window of the last 6"
    assert len(state.history) == 2 and state.history[0]["cities"] == ["Paris"]
    assert state.history[0]["themes"] == ["concert", "jazz"]
    assert state.summary.startswith("Vous cherchiez : théâtre")
