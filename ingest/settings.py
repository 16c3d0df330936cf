"""Knobs of the ingestion layer."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestSettings(BaseSettings):
    """Batching. Read from `PULS_*` variables by the composition root only."""

    model_config = SettingsConfigDict(env_prefix="PULS_INGEST_", extra="ignore")

    batch_size: int = Field(64, ge=1, description="Events embedded and written per batch.")
