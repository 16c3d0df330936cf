"""Knobs of the ingestion layer."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestSettings(BaseSettings):
    """Batching and the OpenAgenda API. Read from `PULS_INGEST_*` variables by the composition
    root only."""

    model_config = SettingsConfigDict(env_prefix="PULS_INGEST_", extra="ignore")

    batch_size: int = Field(64, ge=1, description="Events embedded and written per batch.")
    embedder_threads: int | None = Field(
        None,
        ge=1,
        description="e5 threads while ingesting; unset = every CPU core. An ingest is a batch "
        "job: PULS_EMBEDDER_THREADS (1) is for serving beside the LLM (docs/benchmarks.md).",
    )
    openagenda_key: str | None = Field(
        None, description="OpenAgenda API key for `puls ingest-api` (or pass --key)."
    )
    openagenda_base_url: str = Field(
        "https://api.openagenda.com/v2", description="OpenAgenda API v2 base URL."
    )
