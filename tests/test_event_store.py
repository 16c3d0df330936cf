"""One contract for the event store, passed by SQLite (embedded) and PostgreSQL (the machine's)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from retrieval.event_store import EventStore
from retrieval.records import Event
from tests.conftest import PG_ADMIN

pytestmark = pytest.mark.integration
PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'events.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    events = EventStore(url)
    yield events
    events.close()


def make_event(uid: str, city: str = "Paris", **changes: object) -> Event:
    start = datetime(2025, 6, 21, 20, 30, tzinfo=PARIS)
    fields: dict[str, object] = {
        "uid": uid,
        "source": "test",
        "title": f"Concert {uid}",
        "start": start,
        "end": start + timedelta(hours=2),
        "keywords": ("jazz", "fête de la musique"),
        "city": city,
        "lat": 48.86,
        "lon": 2.34,
        "url": f"https://openagenda.com/e/{uid}",
    }
    fields.update(changes)
    return Event(**fields)  # type: ignore[arg-type]


def test_round_trip_keeps_facts_and_instants(store: EventStore) -> None:
    event = make_event("1")
    store.upsert([event])
    stored = store.get(["1", "missing"])
    assert list(stored) == ["1"]
    got = stored["1"]
    assert got.start == event.start and got.start.tzinfo is not None
    assert got.keywords == event.keywords and (got.lat, got.lon) == (48.86, 2.34)
    assert got.content_hash() == event.content_hash()


def test_upsert_replaces_by_uid_and_hashes_track_content(store: EventStore) -> None:
    store.upsert([make_event("1"), make_event("2", city="Valence")])
    before = store.hashes()
    store.upsert([make_event("1", title="Concert renommé")])
    after = store.hashes()
    assert store.count() == 2
    assert after["1"] != before["1"] and after["2"] == before["2"]
    assert store.get(["1"])["1"].title == "Concert renommé"


def test_held_in_memory_reads_as_the_database_does(store: EventStore) -> None:
    store.upsert([make_event("1"), make_event("2", city="Lyon", lat=None, lon=None)])
    from_database = store.get(["1", "2", "missing"])
    store.hold_in_memory()
    assert store.get(["1", "2", "missing"]) == from_database
    assert store.get(["2"])["2"].start.tzinfo is not None
    # another writer (an ingest in another process) changes an event: it is read afresh
    other = EventStore(str(store.engine.url.render_as_string(hide_password=False)))
    other.upsert([make_event("1", title="Changed elsewhere"), make_event("3")])
    other.close()
    assert store.get(["1"])["1"].title == "Changed elsewhere"
    assert list(store.get(["3", "2", "1"])) == ["3", "2", "1"]  # the order asked
    store.upsert([make_event("2", title="Changed here")])
    assert store.get(["2"])["2"].title == "Changed here"


def test_every_write_by_anyone_moves_the_version(store: EventStore) -> None:
    versions = [store.version()]
    store.upsert([make_event("1"), make_event("2")])
    versions.append(store.version())
    with store.engine.begin() as conn:  # another writer, in plain SQL
        conn.execute(text("UPDATE events SET title = 'Autre' WHERE uid = '1'"))
    versions.append(store.version())
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM events WHERE uid = '2'"))
    versions.append(store.version())
    assert versions == sorted(set(versions)), versions  # strictly increasing


def test_a_held_copy_reads_one_row_per_get_until_the_store_changes(store: EventStore) -> None:
    store.upsert([make_event(str(i)) for i in range(5)])
    store.hold_in_memory()
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    sqlalchemy.event.listen(store.engine, "before_cursor_execute", record)
    assert set(store.get(["0", "3"])) == {"0", "3"}
    assert [s for s in statements if "events_version" not in s] == [], statements
    with store.engine.begin() as conn:  # a delete in plain SQL is seen at once
        conn.execute(text("DELETE FROM events WHERE uid = '3'"))
    assert set(store.get(["0", "3"])) == {"0"}
    statements.clear()
    assert set(store.get(["0", "1"])) == {"0", "1"}
    assert [s for s in statements if "events_version" not in s] == [], statements


def test_a_held_sqlite_copy_runs_one_statement_per_get(tmp_path: Path) -> None:
    """Every statement SQLite itself runs, the pool's own included: no ping on checkout."""
    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    store.upsert([make_event(str(i)) for i in range(3)])
    store.hold_in_memory()
    store.engine.dispose()  # new connections, traced from their first statement
    statements: list[str] = []

    @sqlalchemy.event.listens_for(store.engine, "connect")
    def trace(dbapi_connection: sqlite3.Connection, record: object) -> None:
        dbapi_connection.set_trace_callback(statements.append)

    for _ in range(3):
        assert set(store.get(["0", "2"])) == {"0", "2"}
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 3 and all("events_version" in s for s in reads), statements
    store.close()


def test_a_postgres_connection_dropped_by_the_server_is_replaced(postgres_url: str) -> None:
    """Servers drop idle connections (restarts, proxies): the pool pings on checkout."""
    store = EventStore(postgres_url)
    store.upsert([make_event("1")])
    store.hold_in_memory()
    assert set(store.get(["1"])) == {"1"}  # the pool now holds one connection
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db"),
            {"db": postgres_url.rsplit("/", 1)[1]},
        )
    admin.dispose()
    assert set(store.get(["1"])) == {"1"}
    store.close()


def test_a_store_made_before_the_version_gets_it(store: EventStore) -> None:
    url = store.engine.url.render_as_string(hide_password=False)
    store.upsert([make_event("1")])
    with store.engine.begin() as conn:  # as an older release left it
        if store.engine.dialect.name == "sqlite":
            for op in ("insert", "update", "delete"):
                conn.execute(text(f"DROP TRIGGER events_version_{op}"))
        else:
            conn.execute(text("DROP TRIGGER events_version_bump ON events"))
        conn.execute(text("DROP TABLE events_version"))
    reopened = EventStore(url)
    reopened.hold_in_memory()
    other = EventStore(url)
    other.upsert([make_event("1", title="Changé ailleurs")])
    other.close()
    assert reopened.get(["1"])["1"].title == "Changé ailleurs"
    reopened.close()


def test_cities_are_the_distinct_known_places(store: EventStore) -> None:
    store.upsert(
        [
            make_event("1"),
            make_event("2"),
            make_event("3", city="Valence"),
            make_event("4", city=""),
        ]
    )
    assert store.cities() == ["Paris", "Valence"]


def test_health_check_fails_when_the_database_goes_away(postgres_url: str) -> None:
    events = EventStore(postgres_url)
    events.check_health()
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{postgres_url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()
    with pytest.raises(OperationalError):
        events.check_health()
    events.close()
