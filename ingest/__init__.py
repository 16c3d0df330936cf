"""Turn event exports into clean, searchable events: read → normalise → merge → stage → store."""

from ingest.openagenda_api import OpenAgendaClient, OpenAgendaError
from ingest.pipeline import IngestReport, ingest_agenda, ingest_paths, read_events
from ingest.staging import StagingStore

__all__ = [
    "IngestReport",
    "OpenAgendaClient",
    "OpenAgendaError",
    "StagingStore",
    "ingest_agenda",
    "ingest_paths",
    "read_events",
]
