"""Knobs of the retrieval layer: where the stores live and how results are ranked."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_COLLECTION = "puls_events"


class RetrievalSettings(BaseSettings):
    """Stores and ranking. Read from `PULS_*` variables by the composition root only."""

    model_config = SettingsConfigDict(env_prefix="PULS_", extra="ignore")

    data_dir: Path = Field(
        Path(".puls"), description="Holds the embedded stores (SQLite, Milvus Lite)."
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the event store; unset = SQLite in data_dir."
    )
    milvus_uri: str | None = Field(
        None, description="Milvus server URI or Milvus Lite file; unset = Milvus Lite in data_dir."
    )
    milvus_token: str | None = Field(None, description="Milvus auth token (server only).")
    collection: str = Field(DEFAULT_COLLECTION, description="Milvus collection holding events.")
    top_k: int = Field(5, ge=1, le=50, description="Events returned to the caller.")
    candidates: int = Field(
        60, ge=1, le=1000, description="Dense candidates fetched before scoring."
    )
    lexical_weight: float = Field(
        0.35, ge=0, description="Weight of the query-term match in title/keywords, added to cosine."
    )
    near_me_radius_km: float = Field(
        10.0, gt=0, description="Radius for 'près de moi' when the query names none."
    )

    def resolved_database_url(self) -> str:
        """The configured URL, or SQLite inside `data_dir`."""
        return self.database_url or f"sqlite:///{self.data_dir / 'puls.db'}"

    def resolved_milvus_uri(self) -> str:
        """The configured URI, or a Milvus Lite file inside `data_dir`."""
        return self.milvus_uri or str(self.data_dir / "milvus.db")
