"""Open the retrieval stack that settings describe (used by the CLI, ingest and the app)."""

from __future__ import annotations

from retrieval.embedder import E5Embedder, Embedder, SentenceTransformerEmbedder
from retrieval.event_store import EventStore
from retrieval.geo import open_geo_index
from retrieval.refine import LLMParseRefiner, ParseRefiner
from retrieval.rerank import CrossEncoderReranker, FeatureReranker, Reranker
from retrieval.search import Retriever
from retrieval.settings import RetrievalSettings
from retrieval.vector_store import MilvusVectorStore, check_schema


class ConfigError(ValueError):
    """Settings that name a backend without what it needs (a model for sentence-transformers)."""


def _check_embedder(settings: RetrievalSettings) -> None:
    if settings.embedder == "sentence-transformers" and not settings.embedder_model:
        raise ConfigError("PULS_EMBEDDER=sentence-transformers needs PULS_EMBEDDER_MODEL")


def _check_reranker(settings: RetrievalSettings) -> None:
    if settings.reranker == "cross-encoder" and not settings.reranker_model:
        raise ConfigError("PULS_RERANKER=cross-encoder needs PULS_RERANKER_MODEL")


def _check_refiner(settings: RetrievalSettings) -> None:
    if settings.parse_refiner == "llm" and not settings.parse_refiner_url:
        raise ConfigError("PULS_PARSE_REFINER=llm needs PULS_PARSE_REFINER_URL")


def open_refiner(settings: RetrievalSettings) -> ParseRefiner | None:
    """The LLM parse refiner when configured (nothing is called until a search)."""
    _check_refiner(settings)
    if settings.parse_refiner == "none":
        return None
    assert settings.parse_refiner_url is not None
    return LLMParseRefiner(
        settings.parse_refiner_url,
        settings.parse_refiner_model,
        api_key=settings.parse_refiner_api_key,
        timeout_s=settings.parse_refiner_timeout_s,
        max_terms=settings.parse_refiner_max_terms,
        response_format=settings.parse_refiner_response_format,
    )


def check_stores(settings: RetrievalSettings) -> None:
    """What `open_retriever` would refuse, found without loading a model or creating a
    store: `puls serve` checks it before it starts workers that would fail one by one."""
    _check_embedder(settings)
    _check_reranker(settings)
    _check_refiner(settings)
    check_schema(settings.resolved_milvus_uri(), settings.collection, settings.milvus_token)


def open_embedder(settings: RetrievalSettings) -> Embedder:
    """The configured embedder; nothing loads until first use."""
    _check_embedder(settings)
    if settings.embedder == "e5":
        return E5Embedder(num_threads=settings.embedder_threads)
    assert settings.embedder_model is not None
    return SentenceTransformerEmbedder(
        settings.embedder_model,
        device=settings.embedder_device,
        query_prefix=settings.embedder_query_prefix,
        passage_prefix=settings.embedder_passage_prefix,
        batch_size=settings.embedder_batch_size,
        dtype=settings.embedder_dtype,
    )


def open_reranker(settings: RetrievalSettings) -> Reranker:
    """The configured reranker (a cross-encoder loads its model here: once per process)."""
    _check_reranker(settings)
    if settings.reranker == "features":
        return FeatureReranker(settings)
    assert settings.reranker_model is not None
    return CrossEncoderReranker(
        settings.reranker_model,
        settings,
        device=settings.reranker_device,
        dtype=settings.reranker_dtype,
    )


def open_retriever(
    settings: RetrievalSettings,
    embedder: Embedder | None = None,
    *,
    reranker: Reranker | None = None,
    migrate: bool = False,
) -> Retriever:
    """Embedder + Milvus + event store + reranker, as configured. Cheap unless a
    cross-encoder is configured: the embedder loads on first use or in `warm_up()`.

    `migrate` (ingest only) rebuilds a vector store that has an older schema instead of
    raising `VectorStoreSchemaError`. `embedder` and `reranker` replace the configured ones
    (Ray Serve passes handles to its Embedder and Reranker deployments)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    embedder = embedder or open_embedder(settings)
    vectors = MilvusVectorStore(
        settings.resolved_milvus_uri(),
        settings.collection,
        embedder.dim,
        settings.milvus_token,
        settings.milvus_index_type,
        chunking=settings.chunking(),
        migrate=migrate,
    )
    events = EventStore(settings.resolved_database_url())
    reranker = reranker or open_reranker(settings)
    return Retriever(
        settings,
        embedder,
        vectors,
        events,
        reranker,
        geo=open_geo_index(events),
        refiner=open_refiner(settings),
    )


def close_retriever(retriever: Retriever) -> None:
    retriever.vectors.close()
    retriever.events.close()
    if retriever.refiner is not None:
        retriever.refiner.close()
