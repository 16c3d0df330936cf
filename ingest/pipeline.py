"""read → normalise → merge → compare → embed → store, with counts for every outcome.

Idempotent by construction: an event is re-embedded and rewritten only when its content
hash changed. Vectors are written before rows and the row's hash is the commit marker,
so a run killed midway is finished by the next one (Milvus upserts are replaceable).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rich.progress import Progress

from ingest.mapping import Mapping, MappingError, detect_mapping, shipped_mappings
from ingest.normalise import RowError, to_event
from ingest.readers import SourceError, read_source
from retrieval.embedder import Embedder
from retrieval.event_store import EventStore
from retrieval.records import Event
from retrieval.vector_store import MilvusVectorStore


@dataclass(frozen=True)
class Reject:
    file: str
    row: int
    rule: str
    message: str


@dataclass
class IngestReport:
    """What a run did. `read` = rows seen; every row ends up counted exactly once below it."""

    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    merged: int = 0
    files: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    warnings: Counter[str] = field(default_factory=Counter)
    embed_s: float = 0.0

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["rejects_by_rule"] = dict(Counter(r.rule for r in self.rejects))
        data["rejects"] = data["rejects"][:50]
        data["warnings"] = dict(self.warnings)
        return data


def _newer(candidate: Event, kept: Event) -> bool:
    """Same uid from two sources: the most recently updated record wins; ties keep the first."""
    oldest = datetime.min.replace(tzinfo=UTC)
    return (candidate.updated_at or oldest) > (kept.updated_at or oldest)


def read_events(
    paths: Sequence[Path], report: IngestReport, mapping: Mapping | None = None
) -> dict[str, Event]:
    """Every valid event in `paths`, one per uid; rejects and file errors go to `report`."""
    mappings = shipped_mappings()
    events: dict[str, Event] = {}
    for path in paths:
        try:
            source = read_source(path)
            chosen = mapping or detect_mapping(source.columns, mappings)
        except (SourceError, MappingError) as exc:
            report.errors.append(str(exc))
            continue
        report.files[str(path)] = chosen.name
        for number, row in source.rows:
            report.read += 1
            try:
                event = to_event(row, chosen, source=path.name)
            except RowError as exc:
                report.rejected += 1
                report.rejects.append(Reject(str(path), number, exc.rule, str(exc)))
                continue
            report.warnings.update(event.extra.get("warnings", []))
            if event.uid in events:
                report.merged += 1
                if not _newer(event, events[event.uid]):
                    continue
            events[event.uid] = event
    return events


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


def ingest_paths(
    paths: Sequence[Path],
    embedder: Embedder,
    vectors: MilvusVectorStore,
    store: EventStore,
    batch_size: int = 64,
    mapping: Mapping | None = None,
    progress: bool = True,
) -> IngestReport:
    """Ingest files into the stores and say what happened."""
    report = IngestReport()
    events = read_events(paths, report, mapping)
    store_events(events, embedder, vectors, store, report, batch_size, progress)
    return report
