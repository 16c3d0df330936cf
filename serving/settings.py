"""Knobs of the serving layer: the HTTP server, the LLM engines, answer limits, auth, budgets."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServingSettings(BaseSettings):
    """API and engine. Read from `PULS_*` variables by the composition root only."""

    model_config = SettingsConfigDict(env_prefix="PULS_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address `puls serve` binds.")
    ray_llm_replicas: int = Field(1, ge=1, description="Ray Serve: replicas of the LLM deployment.")
    ray_llm_num_cpus: float = Field(
        1.0,
        ge=0,
        description="Ray Serve: CPUs reserved per LLM replica (llama.cpp threads run there).",
    )
    ray_llm_num_gpus: float = Field(
        0.0, ge=0, description="Ray Serve: GPUs per LLM replica (1 in the gpu profile)."
    )
    ray_llm_max_ongoing_requests: int = Field(
        64, ge=1, description="Ray Serve: requests queued or running per LLM replica."
    )
    ray_ingress_replicas: int = Field(
        1,
        ge=1,
        description="Ray Serve: ingress replicas. Keep 1 with Milvus Lite (one process per data "
        "dir); scale with a Milvus server.",
    )
    ray_ingress_max_ongoing_requests: int = Field(
        256, ge=1, description="Ray Serve: requests in flight per ingress replica."
    )
    ray_haproxy: bool | None = Field(
        None,
        description="Ray Serve: HAProxy instead of Serve's Python proxy as the HTTP ingress "
        "(RAY_SERVE_ENABLE_HA_PROXY, Ray >= 2.55): the hop through Serve takes ~6 ms with it "
        "against ~16 ms behind Serve's proxy (docs/benchmarks.md, ADR 0002). Unset: HAProxy "
        "when its binary is found (ray[serve] installs one on Linux only), else Serve's "
        "proxy; true: HAProxy or a start-up error; false: Serve's proxy. HAProxy's stats "
        "page and Prometheus exporter listen on free ports on all interfaces "
        "(serving/ray_start.py `haproxy_env`).",
    )
    ray_autoscaling_max_replicas: int | None = Field(
        None, ge=1, description="Ray Serve: autoscale the ingress up to this many replicas."
    )
    ray_embedder_deployment: bool = Field(
        False,
        description="Ray Serve: embed queries in an `Embedder` deployment of its own (the gpu "
        "profile: BGE-M3 on a GPU, scaled apart from the ingress) instead of in the ingress.",
    )
    ray_embedder_replicas: int = Field(1, ge=1, description="Ray Serve: Embedder replicas.")
    ray_embedder_num_cpus: float = Field(
        1.0, ge=0, description="Ray Serve: CPUs reserved per Embedder replica."
    )
    ray_embedder_num_gpus: float = Field(
        0.0, ge=0, description="Ray Serve: GPUs per Embedder replica (a fraction shares one)."
    )
    ray_reranker_deployment: bool = Field(
        False,
        description="Ray Serve: score (query, event) pairs in a `Reranker` deployment of its "
        "own (the gpu profile: a cross-encoder on a GPU); needs PULS_RERANKER=cross-encoder.",
    )
    ray_reranker_replicas: int = Field(1, ge=1, description="Ray Serve: Reranker replicas.")
    ray_reranker_num_cpus: float = Field(
        1.0, ge=0, description="Ray Serve: CPUs reserved per Reranker replica."
    )
    ray_reranker_num_gpus: float = Field(
        0.0, ge=0, description="Ray Serve: GPUs per Reranker replica (a fraction shares one)."
    )
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
    llm_large_url: str | None = Field(
        None,
        description="OpenAI-compatible base URL of the large model; unset = no large route "
        "(the router always picks the small model).",
    )
    llm_large_model: str | None = Field(
        None, description="Model name sent to the large engine; unset = `llm_model`."
    )
    llm_timeout_s: float = Field(60.0, gt=0, description="Read timeout of one remote generation.")
    llm_model_path: Path | None = Field(
        None, description="GGUF file for the embedded engine; unset = the packaged Gemma-3-270M."
    )
    llm_threads: int | None = Field(None, ge=1, description="llama.cpp threads; unset = all cores.")
    llm_context: int = Field(2048, ge=256, description="llama.cpp context window (tokens).")
    answer_max_tokens: int = Field(
        60, ge=1, le=512, description="Hard cap on generated tokens per answer."
    )
    degraded_max_tokens: int = Field(
        20, ge=1, le=512, description="Cap on generated tokens once a daily budget is spent."
    )
    max_events: int = Field(
        10, ge=1, le=50, description="Hard cap on the events retrieved (top-k) for one answer."
    )
    degraded_max_events: int = Field(
        3, ge=1, le=50, description="Events in an answer once a daily budget is spent."
    )
    max_body_bytes: int = Field(
        65536, ge=1024, description="Larger request bodies are refused with 413."
    )
    max_embedding_inputs: int = Field(
        64, ge=1, le=2048, description="Most texts one /v1/embeddings request may embed."
    )
    embedding_model_name: str = Field(
        "multilingual-e5-small", description="The `model` clients ask /v1/embeddings for."
    )
    api_keys: str | None = Field(
        None,
        description="Comma-separated bearer tokens accepted on /v1; unset = no authentication.",
    )
    redis_url: str | None = Field(
        None,
        description="Redis holding the daily token counters, e.g. redis://127.0.0.1:6379/0; "
        "unset = counters in this process.",
    )
    budget_key_prefix: str = Field("puls:budget", description="Prefix of the Redis counter keys.")
    daily_token_budget: int | None = Field(
        None, ge=1, description="Tokens per day (all users) before answers degrade; unset = none."
    )
    daily_token_budget_per_user: int | None = Field(
        None, ge=1, description="Tokens per day per `user` before answers degrade; unset = none."
    )
    daily_token_hard_cap: int | None = Field(
        None, ge=1, description="Tokens per day (all users) past which requests get 429."
    )
    daily_token_hard_cap_per_user: int | None = Field(
        None, ge=1, description="Tokens per day per `user` past which requests get 429."
    )

    memory_redis_url: str | None = Field(
        None,
        description="Redis for session memory, the answer cache and recent-request records; "
        "unset = `redis_url`, and with neither, this process's memory.",
    )
    memory_key_prefix: str = Field("puls:mem", description="Prefix of the memory/cache keys.")
    session_ttl_s: float = Field(
        86400.0, gt=0, description="How long a session's turns and slots are remembered."
    )
    session_max_turns: int = Field(
        6, ge=1, le=50, description="User turns a session remembers (older ones are dropped)."
    )
    intro_during_search: bool = Field(
        False,
        description="Ask the engine for the intro while the search runs (its prompt is the "
        "question alone): for an engine on its own hardware. An engine sharing the stack's "
        "cores prefills slower by what the search saves (measured on 2 cores, ADR 0009).",
    )
    cache_enabled: bool = Field(
        False,
        description="Serve repeated questions from the answer cache (opt-in: a hit generates "
        "no tokens, so usage and budgets count none).",
    )
    cache_verify: bool = Field(
        True,
        description="A hit must cite what a fresh search cites. A hit for the same slots and "
        "dense text is the same search and is served at once; any other hit runs the search "
        "and stands only if it cites those events, so it saves the generation, not the "
        "search. Without it a paraphrase can be answered with other events (docs/adr/0006).",
    )
    cache_ttl_s: float = Field(300.0, gt=0, description="Lifetime of a cached answer.")
    cache_similarity: float = Field(
        0.95, gt=0, le=1, description="Cosine (e5) a paraphrase needs to reuse a cached answer."
    )
    cache_data_version_refresh_s: float = Field(
        5.0, ge=0, description="How often the events' digest is recomputed (0 = every request)."
    )
    recent_request_ttl_s: float = Field(
        86400.0, gt=0, description="How long an answer can still receive feedback."
    )
    profile_database_url: str | None = Field(
        None,
        description="SQLAlchemy URL for profiles and feedback; unset = the event store's "
        "database (`PULS_DATABASE_URL`).",
    )
    profile_weight: float = Field(
        0.1, ge=0, le=0.5, description="Largest ranking bonus a profile gives one event."
    )
    api_key_users: str | None = Field(
        None,
        description="Comma-separated key=user pairs: the user each API key acts as for "
        "profiles, sessions and feedback.",
    )

    def api_key_set(self) -> frozenset[str]:
        """The accepted bearer tokens; empty = authentication off."""
        return frozenset(k.strip() for k in (self.api_keys or "").split(",") if k.strip())
