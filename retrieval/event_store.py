"""Events in a relational database (SQLite embedded, PostgreSQL in production), via SQLAlchemy.

The event store holds the facts that answers cite; the vector store only finds uids.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    DateTime,
    Float,
    Integer,
    String,
    Text,
    create_engine,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Dialect, Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.types import TypeDecorator

from retrieval.records import Event


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as UTC, returned timezone-aware, on SQLite (which has no time zones) as elsewhere."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class EventRow(Base):
    __tablename__ = "events"

    uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    long_description: Mapped[str] = mapped_column(Text, default="")
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    start: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    end: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    venue: Mapped[str] = mapped_column(Text, default="")
    address: Mapped[str] = mapped_column(Text, default="")
    city: Mapped[str] = mapped_column(String(200), default="", index=True)
    postal_code: Mapped[str] = mapped_column(String(16), default="")
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    url: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    content_hash: Mapped[str] = mapped_column(String(64))


class EventsVersion(Base):
    """One row whose `version` the database bumps on every write to `events` (triggers), by
    anyone: the in-memory copy compares it instead of re-reading its candidates' hashes."""

    __tablename__ = "events_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


_SQLITE_TRIGGERS = [
    f"CREATE TRIGGER IF NOT EXISTS events_version_{op.lower()} AFTER {op} ON events "
    "BEGIN UPDATE events_version SET version = version + 1 WHERE id = 1; END"
    for op in ("INSERT", "UPDATE", "DELETE")
]
_POSTGRES_TRIGGERS = [
    "CREATE OR REPLACE FUNCTION events_version_bump() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN UPDATE events_version SET version = version + 1 WHERE id = 1; RETURN NULL; END $$",
    "CREATE TRIGGER events_version_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON events "
    "FOR EACH STATEMENT EXECUTE FUNCTION events_version_bump()",
]
# one transaction-scoped lock: API replicas and the ingest Job may start together
_POSTGRES_LOCK = "SELECT pg_advisory_xact_lock(hashtext('puls.events_version'))"
_POSTGRES_HAS_TRIGGER = (
    "SELECT 1 FROM pg_trigger WHERE tgname = 'events_version_bump' AND tgrelid = 'events'::regclass"
)
VERSIONED_DIALECTS = ("sqlite", "postgresql")
# built once: building it each time made a version read 0.086 ms instead of 0.033
_VERSION_QUERY = select(EventsVersion.version).where(EventsVersion.id == 1)
READ_CHUNK = 2000  # uids per IN (...): SQLite caps a statement's parameters


def _row_values(event: Event) -> dict[str, Any]:
    return {
        "uid": event.uid,
        "source": event.source,
        "title": event.title,
        "description": event.description,
        "long_description": event.long_description,
        "keywords": list(event.keywords),
        "start": event.start,
        "end": event.end,
        "venue": event.venue,
        "address": event.address,
        "city": event.city,
        "postal_code": event.postal_code,
        "lat": event.lat,
        "lon": event.lon,
        "url": event.url,
        "updated_at": event.updated_at,
        "content_hash": event.content_hash(),
    }


def _to_event(row: Any) -> Event:
    """An `Event` from anything with `EventRow`'s attributes: an ORM row or a Core `Row`."""
    return Event(
        uid=row.uid,
        source=row.source,
        title=row.title,
        start=row.start,
        end=row.end,
        description=row.description,
        long_description=row.long_description,
        keywords=tuple(row.keywords or ()),
        venue=row.venue,
        address=row.address,
        city=row.city,
        postal_code=row.postal_code,
        lat=row.lat,
        lon=row.lon,
        url=row.url,
        updated_at=row.updated_at,
    )


class EventStore:
    """Reads and writes `Event`s. Creates its tables on first use (Alembic arrives with PostGIS)."""

    def __init__(self, url: str) -> None:
        # A server drops idle connections, so they are pinged on checkout; a SQLite file
        # connection cannot go stale, and the ping was a statement more on every `get` of
        # the held copy (its version read: 0.39 ms with it, 0.25 ms without, here).
        server = make_url(url).get_backend_name() != "sqlite"
        self.engine: Engine = create_engine(url, pool_pre_ping=server)
        Base.metadata.create_all(self.engine)
        self._install_version_triggers()
        # see `hold_in_memory`: (the store's version when read, uid -> (content hash, event))
        self._held: tuple[int, dict[str, tuple[str, Event]]] | None = None

    def _install_version_triggers(self) -> None:
        """The `events_version` row and the triggers that bump it, on a new or an old store
        (created only where missing: replacing a trigger locks the events table)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(EventsVersion).values(id=1, version=0))
        except IntegrityError:
            pass  # the row exists: another process, or an earlier start, made it
        dialect = self.engine.dialect.name
        with self.engine.begin() as conn:
            if dialect == "sqlite":
                for statement in _SQLITE_TRIGGERS:
                    conn.execute(text(statement))
            elif dialect == "postgresql":
                conn.execute(text(_POSTGRES_LOCK))
                if conn.execute(text(_POSTGRES_HAS_TRIGGER)).first() is None:
                    for statement in _POSTGRES_TRIGGERS:
                        conn.execute(text(statement))

    def version(self) -> int:
        """Bumped by the database on every write to the events, whoever writes them."""
        with self.engine.connect() as conn:
            return self._version(conn)

    @staticmethod
    def _version(conn: Connection) -> int:
        return conn.execute(_VERSION_QUERY).scalar_one()

    def hold_in_memory(self) -> None:
        """Keep a copy of every event (with its content hash) to answer `get` from.

        For the embedded profile, which searches an in-memory copy of the vector store
        already (retrieval/memory_index.py): building ~150 candidate events from SQLite rows
        took 3-4 ms of a search's ~10 ms after the query embedding. `get` reads the store's
        version first (one row, which the database bumps on any write: triggers); only when
        it moved are the hashes read again and the changed events re-read. So a change
        written by anyone (an ingest in another process) is seen at once, and a deleted
        event is gone. Reading the ~150 candidates' hashes on every search, as before,
        cost 1.5-2.5 ms of it."""
        if self.engine.dialect.name not in VERSIONED_DIALECTS:
            return  # nothing would say when a copy is stale: `get` reads the database
        table = EventRow.__table__
        with self.engine.connect() as conn:
            version = self._version(conn)  # first: a write after it makes the copy stale
            rows = conn.execute(select(table))
            held = {row.uid: (row.content_hash, _to_event(row)) for row in rows}
        self._held = (version, held)

    def close(self) -> None:
        self.engine.dispose()

    def check_health(self) -> None:
        """Raises if the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def hashes(self) -> dict[str, str]:
        """uid → content hash of every stored event: what ingest compares against."""
        with Session(self.engine) as session:
            rows = session.execute(select(EventRow.uid, EventRow.content_hash))
            return dict(rows.all())  # a Result has keys(): dict(result) misreads it

    def upsert(self, events: Iterable[Event]) -> int:
        """Insert or replace events by uid; returns how many were written."""
        written = 0
        with Session(self.engine) as session, session.begin():
            for event in events:
                session.merge(EventRow(**_row_values(event)))
                written += 1
        return written

    def get(self, uids: Sequence[str]) -> dict[str, Event]:
        """The stored events among `uids`, keyed by uid (unknown uids are absent).

        Plain rows, not ORM objects: a search reads ~150 candidates, and building and
        tracking ORM instances for them took half its time once the query was embedded.
        With `hold_in_memory`, from the copy, brought up to date first when the store's
        version moved."""
        if not uids:
            return {}
        if self._held is None:
            return {uid: event for uid, (_, event) in self._read(uids).items()}
        held_version, held = self._held
        with self.engine.connect() as conn:
            version = self._version(conn)
            if version != held_version:
                held = self._refresh(conn, version, held)
        return {uid: held[uid][1] for uid in uids if uid in held}

    def _refresh(
        self, conn: Connection, version: int, held: dict[str, tuple[str, Event]]
    ) -> dict[str, tuple[str, Event]]:
        """The copy at `version` (read just before): every hash again, the changed events
        re-read, the deleted ones dropped. One pass after each write, not one per search."""
        table = EventRow.__table__
        current = dict(conn.execute(select(table.c.uid, table.c.content_hash)).tuples().all())
        changed = [uid for uid, digest in current.items() if held.get(uid, ("",))[0] != digest]
        fresh = self._read(changed) if changed else {}
        refreshed = {
            uid: fresh.get(uid) or held[uid] for uid in current if uid in fresh or uid in held
        }
        self._held = (version, refreshed)  # one assignment: searches run in threads
        return refreshed

    def _read(self, uids: Sequence[str]) -> dict[str, tuple[str, Event]]:
        """uid → (content hash, event), from the database."""
        table, uids, read = EventRow.__table__, list(uids), {}
        with self.engine.connect() as conn:
            for i in range(0, len(uids), READ_CHUNK):
                rows = conn.execute(select(table).where(table.c.uid.in_(uids[i : i + READ_CHUNK])))
                read.update({row.uid: (row.content_hash, _to_event(row)) for row in rows})
        return read

    def cities(self) -> list[str]:
        """Distinct non-empty city names: the embedded profile's place gazetteer."""
        with Session(self.engine) as session:
            stmt = select(EventRow.city).where(EventRow.city != "").distinct()
            return sorted(session.scalars(stmt))

    def count(self) -> int:
        with Session(self.engine) as session:
            return session.scalar(select(func.count()).select_from(EventRow)) or 0
