"""The one settings object: each layer's settings, composed once at the composition root.

Every field reads a `PULS_*` environment variable (see each layer's settings module);
nothing below the CLI or the app factory reads the environment itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.settings import IngestSettings
from retrieval.settings import RetrievalSettings
from serving.settings import ServingSettings


@dataclass(frozen=True)
class Settings:
    """All of Puls's configuration, built once by `load_settings()` and passed down."""

    retrieval: RetrievalSettings
    ingest: IngestSettings
    serving: ServingSettings


def load_settings() -> Settings:
    """Read the environment (and nothing else) into a `Settings`."""
    return Settings(
        retrieval=RetrievalSettings(), ingest=IngestSettings(), serving=ServingSettings()
    )
