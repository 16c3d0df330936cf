"""`puls memory consolidate` on the machine's Redis and a throwaway PostgreSQL database:
sessions written by the session store (real parser slots), the real CLI in its own process."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from retrieval.query import ParsedQuery, parse_query
from serving.memory.kv import Guarded, RedisKV
from serving.memory.sessions import SessionMemory, SessionState
from serving.memory.slots import conversation_query, session_summary, slots_of, turn_record
from serving.profiles.store import ProfileIn, ProfileStore
from tests.conftest import puls_env, run_puls
from tests.conftest_api import REDIS_URL, redis_prefix

pytestmark = pytest.mark.integration
NOW = datetime(2025, 6, 4, 10, tzinfo=ZoneInfo("Europe/Paris"))
CITIES = ["Valence", "Romans-sur-Isère", "Paris"]


def _merged(texts: list[str]) -> ParsedQuery:
    """The conversation's parse after its last turn, as the chat service makes it."""
    turns = [parse_query(t, NOW, cities=CITIES) for t in texts]
    return parse_query(conversation_query(texts, turns), NOW, cities=CITIES)


def _turns(*texts: str) -> SessionState:
    """One request per text: the history records the chat service stores, turn by turn."""
    prefixes = [list(texts[: i + 1]) for i in range(len(texts))]
    history = [turn_record(_merged(seen), seen) for seen in prefixes]
    last = slots_of(_merged(list(texts)))
    return SessionState(None, list(texts), last.as_dict(), None, "", history)


async def _write_sessions(prefix: str, sessions: dict[str, tuple[str, SessionState]]) -> None:
    kv = RedisKV(REDIS_URL)
    memory = SessionMemory(Guarded(kv), prefix, ttl_s=600, max_turns=6)
    for session_id, (user, state) in sessions.items():
        owned = SessionState(user, state.turns, state.slots, None, state.summary, state.history)
        await memory.remember(session_id, owned)
    await kv.aclose()


def _consolidate(tmp_path: Path, prefix: str, url: str) -> dict[str, object]:
    env = puls_env(tmp_path, PULS_REDIS_URL=REDIS_URL, PULS_MEMORY_KEY_PREFIX=prefix,
                   PULS_PROFILE_DATABASE_URL=url)  # fmt: skip
    result = run_puls("memory", "consolidate", "--json", env=env)
    report: dict[str, object] = json.loads(result.stdout)
    return report


def test_consolidation_adds_frequent_cities_and_themes_once(
    tmp_path: Path, postgres_url: str
) -> None:
    profiles = ProfileStore(postgres_url)
    profiles.put("val", ProfileIn(themes=["jazz"]))
    valence = _turns("des concerts à Valence ce week-end", "et dimanche soir ?")
    romans = _turns("du théâtre à Romans-sur-Isère")
    with redis_prefix() as prefix:
        asyncio.run(_write_sessions(prefix, {
            "s1": ("val", valence), "s2": ("val", romans), "s3": ("nob", valence),
        }))  # fmt: skip
        first = _consolidate(tmp_path, prefix, postgres_url)
        after = profiles.get("val")
        second = _consolidate(tmp_path, prefix, postgres_url)
    assert first["profiles"] == 1 and first["changed"] == 1
    assert after is not None
    assert after.cities == ["Valence"], "Romans came up once: below the minimum count"
    assert after.themes == ["jazz", "concerts"], "added as typed, after the user's own"
    assert after.version == 2
    assert second["changed"] == 0, "a second run changed something"
    again = profiles.get("val")
    assert again is not None and again.version == 2
    assert profiles.get("nob") is None, "a profile was created for a user who never opted in"
    profiles.close()


def test_consolidation_fails_loudly_without_a_reachable_redis(
    tmp_path: Path, postgres_url: str
) -> None:
    env = puls_env(tmp_path, PULS_REDIS_URL="redis://127.0.0.1:1/0",
                   PULS_PROFILE_DATABASE_URL=postgres_url)  # fmt: skip
    result = run_puls("memory", "consolidate", env=env, check=False)
    assert result.returncode == 1 and "puls: error:" in result.stderr
    unset = run_puls("memory", "consolidate", env=puls_env(tmp_path), check=False)
    assert unset.returncode == 1 and "PULS_REDIS_URL" in unset.stderr


@pytest.mark.unit
def test_the_summary_says_what_the_session_is_looking_for() -> None:
    texts = ["des concerts à Valence ce week-end", "et dimanche soir ?"]
    parsed = parse_query("et dimanche soir ? à Valence concert", NOW, cities=CITIES)
    assert session_summary(slots_of(parsed), texts) == (
        "Vous cherchiez : concerts à Valence, dimanche soir"
    )
    kids = ["du cirque pour les enfants"]
    parsed = parse_query(kids[0], NOW, cities=CITIES)
    assert session_summary(slots_of(parsed), kids) == "Vous cherchiez : cirque pour enfants"
