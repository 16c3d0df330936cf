"""read → normalise → merge → link duplicates → stage → embed → store, counting every outcome.

Idempotent by construction: an event is re-embedded and rewritten only when its content
hash changed; raw rows and rejects are inserted only when new; staging rows are upserts.
Vectors are written before event rows and the row's hash is the commit marker, so a run
killed midway (even by SIGKILL) is finished by the next one with the same final state.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.progress import Progress

from ingest.details import EventDetails, event_details
from ingest.geocode import Gazetteer, french_gazetteer
from ingest.mapping import Mapping, MappingError, detect_mapping, shipped_mappings
from ingest.normalise import RowError, detail_fields, to_event
from ingest.openagenda_api import OpenAgendaClient, to_ods_row
from ingest.readers import SourceError, read_source
from ingest.staging import StagingStore
from retrieval.embedder import Embedder
from retrieval.event_store import EventStore
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
    (inserted + updated + unchanged + rejected + merged + near_duplicates)."""

    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    merged: int = 0
    near_duplicates: int = 0
    raw_appended: int = 0
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


def _near_duplicate_key(event: Event) -> tuple[str, str, datetime]:
    return fold(event.title), fold(event.venue or event.address or event.city), event.start


def link_near_duplicates(staged: dict[str, Staged]) -> dict[str, Staged]:
    """Same folded title + place + start under different uids: the smallest uid is indexed,
    the others point to it (`duplicate_of`). Smallest, not first, so file order does not matter."""
    groups: dict[tuple[str, str, datetime], list[str]] = {}
    for uid, item in staged.items():
        groups.setdefault(_near_duplicate_key(item.event), []).append(uid)
    linked = dict(staged)
    for uids in groups.values():
        keeper = min(uids)
        for uid in uids:
            if uid != keeper:
                linked[uid] = Staged(staged[uid].event, staged[uid].details, duplicate_of=keeper)
    return linked


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


def store_events(
    events: dict[str, Event],
    embedder: Embedder,
    vectors: MilvusVectorStore,
    store: EventStore,
    report: IngestReport,
    batch_size: int = 64,
    progress: bool = True,
) -> None:
    """Embed and write the events whose content changed; count the rest as unchanged."""
    known = store.hashes()
    todo = [e for e in events.values() if known.get(e.uid) != e.content_hash()]
    new = sum(1 for e in todo if e.uid not in known)
    report.unchanged += len(events) - len(todo)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("embedding events", total=len(todo))
        for i in range(0, len(todo), batch_size):
            batch = todo[i : i + batch_size]
            started = time.perf_counter()
            embedded = embedder.embed_passages([e.passage() for e in batch])
            report.embed_s += time.perf_counter() - started
            vectors.upsert(batch, embedded)
            store.upsert(batch)
            bar.advance(task, len(batch))
    report.inserted += new
    report.updated += len(todo) - new


def finish(
    reader: _Reader,
    embedder: Embedder,
    vectors: MilvusVectorStore,
    store: EventStore,
    staging: StagingStore | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> IngestReport:
    """Link duplicates, stage, then embed and store what changed; time each part."""
    report = reader.report
    linked = link_near_duplicates(reader.staged)
    report.near_duplicates = sum(1 for s in linked.values() if s.duplicate_of)
    report.geo_precision.update(s.event.extra.get("geo_precision", "none") for s in linked.values())
    started = time.perf_counter()
    if staging is not None:
        stage(reader, staging, report)
    indexed = {uid: s.event for uid, s in linked.items() if s.duplicate_of is None}
    store_events(indexed, embedder, vectors, store, report, batch_size, progress)
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
) -> IngestReport:
    """Ingest an agenda from the OpenAgenda API (only what changed since `updated_since`)."""
    report = IngestReport()
    started = time.perf_counter()
    ods = next(m for m in shipped_mappings() if m.name == "openagenda-ods")
    source = f"openagenda-api:{agenda_uid}"
    rows = enumerate(
        (to_ods_row(e, agenda_uid) for e in client.events(agenda_uid, updated_since)), 1
    )
    reader = _Reader(report, french_gazetteer())
    reader.accept_rows(source, rows, ods)
    report.files[source] = ods.name
    report.parse_s = time.perf_counter() - started
    return finish(reader, embedder, vectors, store, staging, batch_size, progress)
