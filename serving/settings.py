"""Knobs of the serving layer: the HTTP server, the LLM engine and answer limits."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServingSettings(BaseSettings):
    """API and engine. Read from `PULS_*` variables by the composition root only."""

    model_config = SettingsConfigDict(env_prefix="PULS_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address `puls serve` binds.")
    port: int = Field(8080, ge=1, le=65535, description="Port `puls serve` binds.")
    served_model_name: str = Field("puls", description="The `model` clients ask for.")
    llm_url: str | None = Field(
        None,
        description="OpenAI-compatible base URL (vLLM, llama.cpp server), "
        "e.g. http://vllm:8000/v1; "
        "unset = embedded llama.cpp in-process.",
    )
    llm_model: str = Field("gemma-3-270m", description="Model name sent to the remote engine.")
    llm_api_key: str | None = Field(None, description="Bearer token for the remote engine.")
    llm_timeout_s: float = Field(60.0, gt=0, description="Read timeout of one remote generation.")
    llm_model_path: Path | None = Field(
        None, description="GGUF file for the embedded engine; unset = the packaged Gemma-3-270M."
    )
    llm_threads: int | None = Field(None, ge=1, description="llama.cpp threads; unset = all cores.")
    llm_context: int = Field(2048, ge=256, description="llama.cpp context window (tokens).")
    answer_max_tokens: int = Field(
        60, ge=1, le=512, description="Hard cap on generated tokens per answer."
    )
