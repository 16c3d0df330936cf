"""Profiles on PostgreSQL: CRUD, only the owner, erasure of everything, notes from thumbs-up,
and the ranking bonus."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from retrieval.query import parse_query
from retrieval.records import Event
from retrieval.rerank import ScoredEvent
from retrieval.search import SearchResult
from serving.profiles.bias import biased, profile_bonus
from serving.profiles.store import MAX_NOTES, Note, Profile, ProfileIn
from tests.conftest_api import REDIS_URL, redis_prefix
from tests.conftest_memory import JAZZ, app_client, ask, postgres_database

PARIS = ZoneInfo("Europe/Paris")


def _scored(uid: str, city: str, title: str, score: float) -> ScoredEvent:
    start = datetime(2025, 6, 21, 20, tzinfo=PARIS)
    event = Event(uid=uid, source="t", title=title, start=start, end=start, city=city)
    return ScoredEvent(event=event, score=score)


@pytest.mark.unit
def test_the_profile_bonus_reorders_close_events_only() -> None:
    now = datetime(2025, 6, 1, tzinfo=PARIS)
    result = SearchResult(parse_query("concert", now), [
        _scored("a", "Lyon", "Concert rock", 0.60),
        _scored("b", "Paris", "Concert jazz", 0.55),
        _scored("c", "Paris", "Concert jazz", 0.30),
    ])  # fmt: skip
    profile = Profile(cities=["Paris"], themes=["jazz"], version=1, updated_at=now)
    ranked = [s.event.uid for s in biased(result, profile, weight=0.1).events]
    assert ranked == ["b", "a", "c"], "a bonus of at most 0.1 cannot lift c over a"
    assert [s.event.uid for s in biased(result, None, 0.1).events] == ["a", "b", "c"]


@pytest.fixture(scope="module")
def client(ingested: Path) -> Iterator[TestClient]:
    with postgres_database() as (_, url), redis_prefix() as prefix, app_client(
        ingested, profile_database_url=url, memory_redis_url=REDIS_URL, memory_key_prefix=prefix,
        cache_enabled=True
    ) as c:  # fmt: skip
        yield c


@pytest.mark.integration
def test_put_get_update_and_isolation(client: TestClient) -> None:
    body = {"user": "ana", "cities": ["Paris"], "themes": ["jazz"], "accessibility": ["fauteuil"]}
    assert client.put("/v1/users/ana/profile", json=body).json()["version"] == 1
    assert client.put("/v1/users/ana/profile", json=body).json()["version"] == 2
    got = client.get("/v1/users/ana/profile", params={"user": "ana"})
    assert got.status_code == 200 and got.json()["accessibility"] == ["fauteuil"]
    assert client.get("/v1/users/ana/profile", params={"user": "bob"}).status_code == 403
    assert client.get("/v1/users/ana/profile").status_code == 403
    assert client.put("/v1/users/ana/profile", json={**body, "user": "bob"}).status_code == 403
    assert client.delete("/v1/users/ana/profile", params={"user": "bob"}).status_code == 403
    assert client.get("/v1/users/nobody/profile", params={"user": "nobody"}).status_code == 404


@pytest.mark.integration
def test_delete_erases_profile_sessions_feedback_and_cache(client: TestClient) -> None:
    client.put("/v1/users/eve/profile", json={"user": "eve", "cities": ["Paris"]})
    answer = ask(client, JAZZ, user="eve", puls={"session_id": "eve-1"})
    feedback = {"request_id": answer.headers["x-request-id"], "rating": "down", "user": "eve"}
    assert client.post("/v1/feedback", json=feedback).status_code == 201
    erased = client.delete("/v1/users/eve/profile", params={"user": "eve"}).json()["erased"]
    assert erased["profile"] == 1 and erased["feedback"] == 1 and erased["sessions"] == 1
    assert erased["cache_entries"] == 1 and erased["requests"] == 1
    assert client.get("/v1/users/eve/profile", params={"user": "eve"}).status_code == 404
    again = ask(client, JAZZ, user="eve")
    assert again.headers["x-puls-cache"] == "miss", "eve's cached answer survived the erasure"
    memory = client.app.state.memory  # type: ignore[attr-defined]
    assert memory.feedback.count_for("eve") == 0


@pytest.mark.integration
def test_with_auth_the_key_decides_who_you_are(ingested: Path) -> None:
    with app_client(ingested, api_keys="k1,k2", api_key_users="k1=ana") as client:
        ana = {"Authorization": "Bearer k1"}
        other = {"Authorization": "Bearer k2"}
        body = {"cities": ["Paris"], "user": "ana"}
        assert client.put("/v1/users/ana/profile", json=body, headers=ana).status_code == 200
        assert client.get("/v1/users/ana/profile", headers=ana).status_code == 200
        assert client.get("/v1/users/ana/profile?user=ana", headers=other).status_code == 403
        assert client.get("/v1/users/ana/profile").status_code == 401


@pytest.mark.unit
def test_what_a_user_liked_counts_half_of_what_they_chose() -> None:
    now = datetime(2025, 6, 1, tzinfo=PARIS)
    event = _scored("a", "Paris", "Concert jazz", 0.5)
    liked = Note(text="a aimé X", event_uid="x", city="Paris", themes=["jazz"], noted_at=now)
    chose = Profile(cities=["Paris"], themes=["jazz"], version=1, updated_at=now)
    remembered = Profile(version=1, updated_at=now, notes=[liked])
    assert profile_bonus(event, chose, 0.1) == pytest.approx(0.1)
    assert profile_bonus(event, remembered, 0.1) == pytest.approx(0.05)
    both = Profile(cities=["Paris"], version=1, updated_at=now, notes=[liked])
    assert profile_bonus(event, both, 0.1) == pytest.approx(0.075), "bounded by the weight"


def _like(client: TestClient, user: str) -> tuple[dict[str, object], dict[str, object]]:
    """Ask as `user`, thumbs-up the first cited event; (that citation, the feedback reply)."""
    answer = ask(client, JAZZ, user=user)
    citation = answer.json()["citations"][0]
    body = {"request_id": answer.headers["x-request-id"], "rating": "up",
            "event_uid": citation["uid"], "user": user}  # fmt: skip
    reply = client.post("/v1/feedback", json=body)
    assert reply.status_code == 201
    return citation, reply.json()


@pytest.mark.integration
def test_a_thumbs_up_becomes_a_note_of_an_opted_in_profile_only(client: TestClient) -> None:
    client.put("/v1/users/noa/profile", json={"user": "noa", "themes": ["jazz"]})
    citation, reply = _like(client, "noa")
    assert reply["noted"] is True
    _like(client, "noa")  # the same event again: one note, refreshed
    profile = client.get("/v1/users/noa/profile", params={"user": "noa"}).json()
    (note,) = profile["notes"]
    assert note["text"] == f"a aimé {citation['title']}" and note["event_uid"] == citation["uid"]
    assert note["city"] == citation["city"] and note["noted_at"]
    assert profile["version"] == 3, "each note bumps the version (notes bias ranking)"
    _, stranger = _like(client, "sam")
    assert stranger["noted"] is False
    assert client.get("/v1/users/sam/profile", params={"user": "sam"}).status_code == 404
    client.delete("/v1/users/noa/profile", params={"user": "noa"})
    client.put("/v1/users/noa/profile", json={"user": "noa"})
    again = client.get("/v1/users/noa/profile", params={"user": "noa"}).json()
    assert again["notes"] == [], "DELETE left notes behind"


@pytest.mark.integration
def test_notes_keep_the_newest_few(client: TestClient) -> None:
    store = client.app.state.memory.profiles  # type: ignore[attr-defined]
    store.put("ida", ProfileIn())
    for i in range(MAX_NOTES + 5):
        assert store.add_note("ida", f"uid-{i}", f"Spectacle {i}", "Paris", ["danse"])
    notes = store.get("ida").notes
    assert len(notes) == MAX_NOTES
    assert notes[0].event_uid == f"uid-{MAX_NOTES + 4}" and notes[-1].event_uid == "uid-5"
    assert not store.add_note("nobody", "uid-0", "Spectacle", "Paris", [])
    assert store.get("nobody") is None
