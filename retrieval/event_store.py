"""Events in a relational database (SQLite embedded, PostgreSQL in production), via SQLAlchemy.

The event store holds the facts that answers cite; the vector store only finds uids.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, String, Text, create_engine, func, select, text
from sqlalchemy.engine import Dialect, Engine
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
    """Reads and writes `Event`s. Creates its table on first use (Alembic arrives with PostGIS)."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        Base.metadata.create_all(self.engine)
        self._copy: dict[str, tuple[str, Event]] | None = None  # see `hold_in_memory`

    def hold_in_memory(self) -> None:
        """Keep a copy of every event (with its content hash) to answer `get` from.

        For the embedded profile, which searches an in-memory copy of the vector store
        already (retrieval/memory_index.py): building ~150 candidate events from SQLite rows
        took 3-4 ms of a search's ~10 ms after the query embedding. `get` still asks the
        database for the candidates' content hashes, so a change written by anyone (an
        ingest in another process) is read afresh, and a deleted event is gone."""
        table = EventRow.__table__
        with self.engine.connect() as conn:
            rows = conn.execute(select(table))
            self._copy = {row.uid: (row.content_hash, _to_event(row)) for row in rows}

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
        With `hold_in_memory`, only the content hashes are read; events whose hash the copy
        holds come from it."""
        if not uids:
            return {}
        copy = self._copy
        if copy is None:
            return {uid: event for uid, (_, event) in self._read(uids).items()}
        table = EventRow.__table__
        with self.engine.connect() as conn:
            query = select(table.c.uid, table.c.content_hash).where(table.c.uid.in_(list(uids)))
            current = dict(conn.execute(query).tuples().all())
        changed = [uid for uid, digest in current.items() if copy.get(uid, ("",))[0] != digest]
        copy.update(self._read(changed) if changed else {})
        return {uid: copy[uid][1] for uid in uids if uid in current and uid in copy}

    def _read(self, uids: Sequence[str]) -> dict[str, tuple[str, Event]]:
        """uid → (content hash, event), from the database."""
        table = EventRow.__table__
        with self.engine.connect() as conn:
            rows = conn.execute(select(table).where(table.c.uid.in_(list(uids))))
            return {row.uid: (row.content_hash, _to_event(row)) for row in rows}

    def cities(self) -> list[str]:
        """Distinct non-empty city names: the embedded profile's place gazetteer."""
        with Session(self.engine) as session:
            stmt = select(EventRow.city).where(EventRow.city != "").distinct()
            return sorted(session.scalars(stmt))

    def count(self) -> int:
        with Session(self.engine) as session:
            return session.scalar(select(func.count()).select_from(EventRow)) or 0
