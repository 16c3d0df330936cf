"""The ingest layer's own tables: what came in (`raw`), what it became (`stg`), what was refused.

    raw.records       append-only: every distinct source row ever read (source, row, content
                      hash, ingested_at, payload without personal data)
    stg.venues        places, deduplicated by folded name + address + city + postal code
    stg.events        per event: venue, status, audience, access, geocoding precision, and the
                      uid it duplicates when it is a near-duplicate (then it is not indexed)
    stg.occurrences   one row per session (from `timings`)
    stg.rejects       rows refused, with the rule and message, kept (never silently dropped)
    stg.api_watermarks  per OpenAgenda agenda, the newest `updatedAt` ingested: where the next
                      `puls ingest-api` run starts (migration 0002)

PostgreSQL holds them in the `raw` and `stg` schemas, with PostGIS `geography(Point,4326)`
columns generated from lat/lon and GiST-indexed. SQLite (embedded profile) uses the same
models and the same schema names: `raw` and `stg` are attached database files next to the
main one. Alembic (`ingest/migrations`) creates and evolves both.

Every write is an idempotent upsert or an insert-if-absent, so re-running a run, or finishing
a killed one, leaves the same final state.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    JSON,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url

from retrieval.event_store import UTCDateTime

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_ingest"
SCHEMAS = ("raw", "stg")
UPSERT_CHUNK = 500

metadata = MetaData()

raw_records = Table(
    "records",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(300), nullable=False),
    Column("row_number", Integer, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("ingested_at", UTCDateTime, nullable=False),
    Column("payload", JSON, nullable=False),
    UniqueConstraint("source", "content_hash", name="uq_raw_records_source_hash"),
    schema="raw",
)

venues = Table(
    "venues",
    metadata,
    Column("venue_key", String(64), primary_key=True),
    Column("name", Text, nullable=False, default=""),
    Column("address", Text, nullable=False, default=""),
    Column("city", String(200), nullable=False, default=""),
    Column("postal_code", String(16), nullable=False, default=""),
    Column("lat", Float, nullable=True),
    Column("lon", Float, nullable=True),
    Column("geo_precision", String(8), nullable=False),
    schema="stg",
)

events = Table(
    "events",
    metadata,
    Column("uid", String(64), primary_key=True),
    Column("source", String(300), nullable=False),
    Column("title", Text, nullable=False),
    Column("start", UTCDateTime, nullable=False),
    Column("end", UTCDateTime, nullable=False),
    Column("venue_key", String(64), nullable=False, index=True),
    Column("lat", Float, nullable=True),
    Column("lon", Float, nullable=True),
    Column("geo_precision", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attendance_mode", String(8), nullable=False),
    Column("online_url", Text, nullable=False, default=""),
    Column("age_min", Integer, nullable=True),
    Column("age_max", Integer, nullable=True),
    Column("accessibility", JSON, nullable=False),
    Column("registration_links", JSON, nullable=False),
    Column("duplicate_of", String(64), nullable=True),
    Column("content_hash", String(64), nullable=False),
    schema="stg",
)

occurrences = Table(
    "occurrences",
    metadata,
    Column("uid", String(64), primary_key=True),
    Column("begin", UTCDateTime, primary_key=True),
    Column("end", UTCDateTime, nullable=False),
    schema="stg",
)

rejects = Table(
    "rejects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(300), nullable=False),
    Column("row_number", Integer, nullable=False),
    Column("rule", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("first_seen_at", UTCDateTime, nullable=False),
    UniqueConstraint("source", "row_number", "content_hash", "rule", name="uq_rejects_row"),
    schema="stg",
)


api_watermarks = Table(
    "api_watermarks",
    metadata,
    Column("agenda_uid", String(200), primary_key=True),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    schema="stg",
)


def _attach_sqlite_schemas(engine: Engine) -> None:
    """SQLite has no schemas; attached files named `raw` and `stg` play their part."""
    main = Path(make_url(engine.url).database or "")
    files = {schema: main.with_name(f"{main.stem}-{schema}.db") for schema in SCHEMAS}

    @event.listens_for(engine, "connect")
    def _attach(dbapi_connection: Any, _record: Any) -> None:
        for schema, path in files.items():
            dbapi_connection.execute(f"ATTACH DATABASE '{path}' AS {schema}")


def _insert(conn: Connection, table: Table) -> Any:
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    return dialect.insert(table)


def _write(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], update: bool = True
) -> None:
    """Upsert on the primary key (`update`) or insert-if-absent on any unique key."""
    keys = [c.name for c in table.primary_key.columns]
    for i in range(0, len(rows), UPSERT_CHUNK):
        chunk = rows[i : i + UPSERT_CHUNK]
        stmt = _insert(conn, table).values(list(chunk))
        if update:
            changed = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
            stmt = stmt.on_conflict_do_update(index_elements=keys, set_=changed)
        else:
            stmt = stmt.on_conflict_do_nothing()
        conn.execute(stmt)


class StagingStore:
    """Writes the `raw` and `stg` tables; migrates them to the latest revision when opened."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            _attach_sqlite_schemas(self.engine)
        self.migrate()

    def migrate(self) -> None:
        """Alembic `upgrade head` on this database (a no-op when already there)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def close(self) -> None:
        self.engine.dispose()

    def known_raw_hashes(self, source: str) -> set[str]:
        with self.engine.connect() as conn:
            stmt = select(raw_records.c.content_hash).where(raw_records.c.source == source)
            return set(conn.scalars(stmt))

    def append_raw(self, source: str, rows: Iterable[tuple[int, str, dict[str, Any]]]) -> int:
        """Append rows (number, content hash, payload) not yet recorded for `source`."""
        known = self.known_raw_hashes(source)
        now = datetime.now(UTC)
        new = [
            {"source": source, "row_number": n, "content_hash": h, "ingested_at": now, "payload": p}
            for n, h, p in rows
            if h not in known
        ]
        with self.engine.begin() as conn:
            _write(conn, raw_records, new, update=False)
        return len(new)

    def keep_rejects(self, rows: Sequence[dict[str, Any]]) -> None:
        """Record refused rows (source, row_number, rule, message, content_hash) once each."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            _write(conn, rejects, [{**r, "first_seen_at": now} for r in rows], update=False)

    def upsert_staged(
        self,
        venue_rows: Sequence[dict[str, Any]],
        event_rows: Sequence[dict[str, Any]],
        occurrence_rows: Sequence[dict[str, Any]],
    ) -> None:
        """Write venues, events and their sessions in one transaction."""
        uids = [r["uid"] for r in event_rows]
        with self.engine.begin() as conn:
            _write(conn, venues, venue_rows)
            _write(conn, events, event_rows)
            for i in range(0, len(uids), UPSERT_CHUNK):  # sessions are replaced, not merged
                conn.execute(
                    occurrences.delete().where(occurrences.c.uid.in_(uids[i : i + UPSERT_CHUNK]))
                )
            _write(conn, occurrences, occurrence_rows)

    def mark_duplicates(self, keepers: dict[str, str]) -> None:
        """Point already-staged events at the event they now duplicate (uid → keeper uid)."""
        if not keepers:
            return
        with self.engine.begin() as conn:
            for uid, keeper in keepers.items():
                conn.execute(events.update().where(events.c.uid == uid).values(duplicate_of=keeper))

    def watermark(self, agenda_uid: str) -> datetime | None:
        """The newest `updatedAt` ingested from this agenda, or None before its first run."""
        with self.engine.connect() as conn:
            stmt = select(api_watermarks.c.updated_at).where(
                api_watermarks.c.agenda_uid == agenda_uid
            )
            return conn.scalar(stmt)

    def advance_watermark(self, agenda_uid: str, updated_at: datetime) -> datetime:
        """Record `updated_at` unless the stored watermark is already newer; returns the one
        kept (a run with an older `--since` never moves it back)."""
        current = self.watermark(agenda_uid)
        if current is not None and current >= updated_at:
            return current
        row = {"agenda_uid": agenda_uid, "updated_at": updated_at, "recorded_at": datetime.now(UTC)}
        with self.engine.begin() as conn:
            _write(conn, api_watermarks, [row])
        return updated_at

    def counts(self) -> dict[str, int]:
        """Rows per table, for reports and tests."""
        tables = {"raw": raw_records, "venues": venues, "events": events}
        tables |= {"occurrences": occurrences, "rejects": rejects}
        with self.engine.connect() as conn:
            return {
                name: int(conn.scalar(select(func.count()).select_from(t)) or 0)
                for name, t in tables.items()
            }
