"""Turn event exports into clean, searchable events: read → normalise → merge → store."""

from ingest.pipeline import IngestReport, ingest_paths, read_events

__all__ = ["IngestReport", "ingest_paths", "read_events"]
