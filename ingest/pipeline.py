"""read → normalise → merge → link duplicates → stage → embed → store, counting every outcome.

Idempotent by construction: an event is re-embedded and rewritten only when its content
hash changed; raw rows and rejects are inserted only when new; staging rows are upserts.
Vectors are written before event rows and the row's hash is the commit marker, so a run
killed midway (even by SIGKILL) is finished by the next one with the same final state.

The vector store keeps its own copy of each event's hash (with the chunk settings): an
event whose vectors are missing or were built with other chunk settings is re-embedded
from the event store even when its facts did not change (`reindexed`), so a lost, migrated
or re-chunked vector store heals on the next run.

Near-duplicates are linked across runs: an event already indexed that becomes the
near-duplicate of another (smaller uid) is removed from the vector store and the events
table, and its staging row points to the event it repeats.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.progress import Progress
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ingest.details import EventDetails, event_details
from ingest.geocode import Gazetteer, french_gazetteer
from ingest.mapping import Mapping, MappingError, detect_mapping, shipped_mappings
from ingest.normalise import RowError, detail_fields, to_event
from ingest.openagenda_api import OpenAgendaClient, to_ods_row
from ingest.readers import SourceError, read_source
from ingest.staging import StagingStore
from retrieval.embedder import Embedder, Vectors
from retrieval.event_store import EventRow, EventStore
from retrieval.records import Event
from retrieval.text import fold
from retrieval.vector_store import MilvusVectorStore

PERSONAL_PREFIXES = ("contributor_",)
"""Source columns holding personal data: dropped on read, never stored, logged or embedded."""


@dataclass(frozen=True)
class Reject:
    file: str
    row: int
    rule: str
    message: str


@dataclass(frozen=True)
class Staged:
    """An accepted row: the searchable event, its details, and the near-duplicate it repeats."""

    event: Event
    details: EventDetails
    duplicate_of: str | None = None


@dataclass
class IngestReport:
    """What a run did. `read` = rows seen; every row ends up counted exactly once below it
    (inserted + updated + unchanged + rejected + merged + near_duplicates).

    Outside that sum: `reindexed` = events whose facts did not change but whose vectors were
    rebuilt (new chunk settings, a migrated or lost vector store), whether read in this run
    or only stored; `duplicates_removed` = events indexed earlier and now removed because they
    became near-duplicates; `chunks_embedded` = texts embedded (passages + description chunks).
    `since`/`watermark` (API runs): the `updatedAt` asked from and the newest one now stored."""

    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    merged: int = 0
    near_duplicates: int = 0
    raw_appended: int = 0
    reindexed: int = 0
    duplicates_removed: int = 0
    chunks_embedded: int = 0
    vector_store_migrated: bool = False
    since: str | None = None
    watermark: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    warnings: Counter[str] = field(default_factory=Counter)
    geo_precision: Counter[str] = field(default_factory=Counter)
    parse_s: float = 0.0
    embed_s: float = 0.0
    store_s: float = 0.0

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["rejects_by_rule"] = dict(Counter(r.rule for r in self.rejects))
        data["rejects"] = data["rejects"][:50]
        data["warnings"] = dict(self.warnings)
        data["geo_precision"] = dict(self.geo_precision)
        return data

    def summary(self) -> str:
        """The data-quality report for people: counts, then one line per rule that fired."""
        counts = ("read", "inserted", "updated", "unchanged", "rejected", "merged")
        lines = [" ".join(f"{k}={getattr(self, k)}" for k in (*counts, "near_duplicates"))]
        if self.vector_store_migrated:
            lines.append("  vector store rebuilt with the chunked schema (docs/adr/0003)")
        for name in ("reindexed", "duplicates_removed"):
            if getattr(self, name):
                lines.append(f"  {name.replace('_', ' ')}: {getattr(self, name)} event(s)")
        if self.watermark:
            since = self.since or "-"
            lines.append(f"  updatedAt watermark: {self.watermark} (asked since {since})")
        for rule, n in sorted(Counter(r.rule for r in self.rejects).items()):
            lines.append(f"  rejected {n} row(s): {rule}")
        for warning, n in sorted(self.warnings.items()):
            lines.append(f"  warning {n} row(s): {warning}")
        placed = ", ".join(f"{k}={v}" for k, v in sorted(self.geo_precision.items()))
        lines.append(f"  coordinates: {placed or '-'}")
        return "\n".join(lines)


def _newer(candidate: Event, kept: Event) -> bool:
    """Same uid from two sources: the most recently updated record wins; ties keep the first."""
    oldest = datetime.min.replace(tzinfo=UTC)
    return (candidate.updated_at or oldest) > (kept.updated_at or oldest)


def without_personal_data(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not str(k).startswith(PERSONAL_PREFIXES)}


def row_hash(row: dict[str, Any]) -> str:
    """SHA-256 of the row's canonical JSON (sorted keys)."""
    canonical = json.dumps(row, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class _Reader:
    """Accumulates one run's accepted rows (one per uid), rejects and raw rows."""

    def __init__(self, report: IngestReport, gazetteer: Gazetteer | None) -> None:
        self.report = report
        self.gazetteer = gazetteer
        self.staged: dict[str, Staged] = {}
        self.rejected_rows: list[dict[str, Any]] = []
        self.raw: dict[str, list[tuple[int, str, dict[str, Any]]]] = {}

    def accept_rows(
        self, source: str, rows: Iterable[tuple[int, dict[str, Any]]], mapping: Mapping
    ) -> None:
        name = Path(source).name
        raw = self.raw.setdefault(source, [])
        for number, original in rows:
            self.report.read += 1
            row = without_personal_data(original)
            digest = row_hash(row)
            raw.append((number, digest, row))
            try:
                event = to_event(row, mapping, source=name, gazetteer=self.gazetteer)
                details = event_details(detail_fields(row, mapping))
            except RowError as exc:
                self._reject(Reject(source, number, exc.rule, str(exc)), digest)
                continue
            self.report.warnings.update(event.extra.get("warnings", []))
            self._keep(Staged(event, details))

    def _reject(self, reject: Reject, digest: str) -> None:
        self.report.rejected += 1
        self.report.rejects.append(reject)
        self.rejected_rows.append(
            {"source": reject.file, "row_number": reject.row, "rule": reject.rule,
             "message": reject.message, "content_hash": digest}
        )  # fmt: skip

    def _keep(self, staged: Staged) -> None:
        uid = staged.event.uid
        if uid in self.staged:
            self.report.merged += 1
            if not _newer(staged.event, self.staged[uid].event):
                return
        self.staged[uid] = staged


NearKey = tuple[str, str, datetime]


def near_duplicate_key(title: str, venue: str, address: str, city: str, start: datetime) -> NearKey:
    return fold(title), fold(venue or address or city), start


def _near_duplicate_key(event: Event) -> NearKey:
    return near_duplicate_key(event.title, event.venue, event.address, event.city, event.start)


def link_near_duplicates(
    staged: dict[str, Staged], stored: dict[str, NearKey] | None = None
) -> tuple[dict[str, Staged], dict[str, str]]:
    """Same folded title + place + start under different uids: the smallest uid is indexed,
    the others point to it (`duplicate_of`). Smallest, not first, so file order does not matter.

    `stored` holds the keys of events indexed by earlier runs: they compete too, so an event
    is never indexed twice across runs. Returns the linked staged events and, for stored
    events not in this run that lost, uid → the uid they duplicate."""
    groups: dict[NearKey, list[str]] = {}
    for uid, key in (stored or {}).items():
        if uid not in staged:
            groups.setdefault(key, []).append(uid)
    for uid, item in staged.items():
        groups.setdefault(_near_duplicate_key(item.event), []).append(uid)
    linked = dict(staged)
    losers: dict[str, str] = {}
    for uids in groups.values():
        keeper = min(uids)
        for uid in uids:
            if uid == keeper:
                continue
            if uid in staged:
                linked[uid] = Staged(staged[uid].event, staged[uid].details, duplicate_of=keeper)
            else:
                losers[uid] = keeper
    return linked, losers


def stored_near_duplicate_keys(store: EventStore) -> dict[str, NearKey]:
    """The near-duplicate key of every event in the event store (indexed by earlier runs)."""
    columns = (EventRow.uid, EventRow.title, EventRow.venue, EventRow.address, EventRow.city,
               EventRow.start)  # fmt: skip
    with Session(store.engine) as session:
        rows = session.execute(select(*columns)).all()
    return {uid: near_duplicate_key(t, v, a, c, start) for uid, t, v, a, c, start in rows}


def remove_events(
    uids: Iterable[str], vectors: MilvusVectorStore, store: EventStore, batch: int = 500
) -> None:
    """Delete events from the vector store, then from the events table (a run killed between
    the two leaves a row that the next run removes again)."""
    chosen = sorted(uids)
    vectors.delete(chosen)
    with Session(store.engine) as session, session.begin():
        for i in range(0, len(chosen), batch):
            session.execute(delete(EventRow).where(EventRow.uid.in_(chosen[i : i + batch])))


def read_events(
    paths: Sequence[Path],
    report: IngestReport,
    mapping: Mapping | None = None,
    gazetteer: Gazetteer | None = None,
) -> _Reader:
    """Every valid row of `paths`, one per uid; rejects and file errors go to `report`."""
    mappings = shipped_mappings()
    reader = _Reader(report, gazetteer)
    for path in paths:
        try:
            source = read_source(path)
            chosen = mapping or detect_mapping(source.columns, mappings)
        except (SourceError, MappingError) as exc:
            report.errors.append(str(exc))
            continue
        report.files[str(path)] = chosen.name
        reader.accept_rows(str(path), source.rows, chosen)
    return reader


def _venue_key(event: Event) -> str:
    parts = (event.venue, event.address, event.city, event.postal_code)
    return hashlib.sha256("|".join(fold(p) for p in parts).encode()).hexdigest()


def _staging_rows(items: Iterable[Staged]) -> tuple[list[dict[str, Any]], ...]:
    venue_rows: dict[str, dict[str, Any]] = {}
    event_rows: list[dict[str, Any]] = []
    occurrence_rows: list[dict[str, Any]] = []
    for item in items:
        e, d, key = item.event, item.details, _venue_key(item.event)
        precision = e.extra.get("geo_precision", "none")
        venue_rows.setdefault(
            key,
            {"venue_key": key, "name": e.venue, "address": e.address, "city": e.city,
             "postal_code": e.postal_code, "lat": e.lat, "lon": e.lon, "geo_precision": precision},
        )  # fmt: skip
        event_rows.append(
            {"uid": e.uid, "source": e.source, "title": e.title, "start": e.start, "end": e.end,
             "venue_key": key, "lat": e.lat, "lon": e.lon, "geo_precision": precision,
             "status": d.status, "attendance_mode": d.attendance_mode, "online_url": d.online_url,
             "age_min": d.age_min, "age_max": d.age_max, "accessibility": list(d.accessibility),
             "registration_links": list(d.registration_links), "duplicate_of": item.duplicate_of,
             "content_hash": e.content_hash()}
        )  # fmt: skip
        occurrence_rows.extend(
            {"uid": e.uid, "begin": o.begin, "end": o.end} for o in d.occurrences
        )
    return list(venue_rows.values()), event_rows, occurrence_rows


def stage(reader: _Reader, staging: StagingStore, report: IngestReport) -> None:
    """Raw rows (insert-if-new), rejects (kept once) and staging rows (upserts)."""
    for source, rows in reader.raw.items():
        report.raw_appended += staging.append_raw(source, rows)
    staging.keep_rejects(reader.rejected_rows)
    staging.upsert_staged(*_staging_rows(reader.staged.values()))


def _embed_chunks(
    events: Sequence[Event], embedder: Embedder, vectors: MilvusVectorStore
) -> tuple[list[Vectors], int]:
    """One array of chunk vectors per event (chunk 0 first), from one embedding call."""
    texts = [vectors.chunk_texts(event) for event in events]
    flat = embedder.embed_passages([t for chunks in texts for t in chunks])
    per_event, offset = [], 0
    for chunks in texts:
        per_event.append(flat[offset : offset + len(chunks)])
        offset += len(chunks)
    return per_event, offset


def store_events(
    events: dict[str, Event],
    embedder: Embedder,
    vectors: MilvusVectorStore,
    store: EventStore,
    report: IngestReport,
    batch_size: int = 64,
    progress: bool = True,
    skip: AbstractSet[str] = frozenset(),
    known: dict[str, str] | None = None,
    indexed: dict[str, str] | None = None,
) -> None:
    """Embed and write the events whose content changed; count the rest as unchanged.

    Stored events (read in this run or not, except `skip`) whose vectors are missing or were
    built with other chunk settings are re-embedded from the event store (`reindexed`).
    `known` / `indexed`: the event store's and the vector store's hashes, if already read."""
    known = store.hashes() if known is None else known
    indexed = vectors.hashes() if indexed is None else indexed

    def stale(uid: str, content_hash: str) -> bool:
        return indexed.get(uid) != vectors.index_key(content_hash)

    todo = [
        e for e in events.values()
        if known.get(e.uid) != e.content_hash() or stale(e.uid, e.content_hash())
    ]  # fmt: skip
    new = sum(1 for e in todo if e.uid not in known)
    changed = sum(1 for e in todo if e.uid in known and known[e.uid] != e.content_hash())
    orphans = [
        uid for uid, h in known.items() if uid not in events and uid not in skip and stale(uid, h)
    ]
    todo.extend(store.get(orphans).values())
    report.unchanged += len(events) - new - changed
    report.reindexed += len(todo) - new - changed
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("embedding events", total=len(todo))
        for i in range(0, len(todo), batch_size):
            batch = todo[i : i + batch_size]
            started = time.perf_counter()
            embedded, texts = _embed_chunks(batch, embedder, vectors)
            report.embed_s += time.perf_counter() - started
            report.chunks_embedded += texts
            vectors.upsert(batch, embedded)
            store.upsert(batch)
            bar.advance(task, len(batch))
    report.inserted += new
    report.updated += changed


def finish(
    reader: _Reader,
    embedder: Embedder,
    vectors: MilvusVectorStore,
    store: EventStore,
    staging: StagingStore | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> IngestReport:
    """Link duplicates (against stored events too), stage, remove events that became
    duplicates, then embed and store what changed; time each part."""
    report = reader.report
    report.vector_store_migrated = vectors.migrated
    started = time.perf_counter()
    linked, losers = link_near_duplicates(reader.staged, stored_near_duplicate_keys(store))
    report.near_duplicates = sum(1 for s in linked.values() if s.duplicate_of)
    report.geo_precision.update(s.event.extra.get("geo_precision", "none") for s in linked.values())
    if staging is not None:
        stage(reader, staging, report)
        staging.mark_duplicates(losers)
    duplicates = set(losers) | {uid for uid, s in linked.items() if s.duplicate_of}
    known, indexed = store.hashes(), vectors.hashes()
    present = duplicates & (known.keys() | indexed.keys())
    if present:
        remove_events(present, vectors, store)
        known = {uid: h for uid, h in known.items() if uid not in present}
        indexed = {uid: h for uid, h in indexed.items() if uid not in present}
    report.duplicates_removed = len(present)
    events = {uid: s.event for uid, s in linked.items() if s.duplicate_of is None}
    store_events(
        events, embedder, vectors, store, report, batch_size, progress, duplicates, known, indexed
    )
    report.store_s = time.perf_counter() - started - report.embed_s
    return report


def reindex(
    embedder: Embedder,
    vectors: MilvusVectorStore,
    store: EventStore,
    batch_size: int = 64,
    progress: bool = True,
) -> IngestReport:
    """Re-embed every stored event whose vectors are missing or stale (after a schema
    migration or a change of chunk settings); reads no source."""
    report = IngestReport(vector_store_migrated=vectors.migrated)
    started = time.perf_counter()
    store_events({}, embedder, vectors, store, report, batch_size, progress)
    report.store_s = time.perf_counter() - started - report.embed_s
    return report


def ingest_paths(
    paths: Sequence[Path],
    embedder: Embedder,
    vectors: MilvusVectorStore,
    store: EventStore,
    batch_size: int = 64,
    mapping: Mapping | None = None,
    progress: bool = True,
    staging: StagingStore | None = None,
    geocode: bool = True,
) -> IngestReport:
    """Ingest files into the stores and say what happened."""
    report = IngestReport()
    started = time.perf_counter()
    reader = read_events(paths, report, mapping, french_gazetteer() if geocode else None)
    report.parse_s = time.perf_counter() - started
    return finish(reader, embedder, vectors, store, staging, batch_size, progress)


def _newest_update(events: Iterable[dict[str, Any]], newest: list[datetime]) -> Iterator[dict]:
    """Pass API events through, keeping the newest parsable `updatedAt` in `newest[0]`."""
    for event in events:
        try:
            stamp = datetime.fromisoformat(str(event.get("updatedAt")).replace("Z", "+00:00"))
        except ValueError:
            stamp = None
        if stamp is not None and stamp.tzinfo is not None and (not newest or stamp > newest[0]):
            newest[:] = [stamp]
        yield event


def ingest_agenda(
    client: OpenAgendaClient,
    agenda_uid: str,
    embedder: Embedder,
    vectors: MilvusVectorStore,
    store: EventStore,
    updated_since: datetime | None = None,
    staging: StagingStore | None = None,
    batch_size: int = 64,
    progress: bool = True,
    full: bool = False,
) -> IngestReport:
    """Ingest an agenda from the OpenAgenda API: only what changed since `updated_since`, or
    else since the agenda's stored watermark (the newest `updatedAt` a previous run
    ingested; `full` ignores it). The watermark advances once the run is stored."""
    report = IngestReport()
    started = time.perf_counter()
    if updated_since is None and staging is not None and not full:
        updated_since = staging.watermark(agenda_uid)
    report.since = updated_since.isoformat() if updated_since else None
    ods = next(m for m in shipped_mappings() if m.name == "openagenda-ods")
    source = f"openagenda-api:{agenda_uid}"
    newest: list[datetime] = []
    api_events = _newest_update(client.events(agenda_uid, updated_since), newest)
    rows = enumerate((to_ods_row(e, agenda_uid) for e in api_events), 1)
    reader = _Reader(report, french_gazetteer())
    reader.accept_rows(source, rows, ods)
    report.files[source] = ods.name
    report.parse_s = time.perf_counter() - started
    finish(reader, embedder, vectors, store, staging, batch_size, progress)
    if staging is not None:
        kept = staging.advance_watermark(agenda_uid, newest[0]) if newest else None
        kept = kept or staging.watermark(agenda_uid)
        report.watermark = kept.isoformat() if kept else None
    return report
