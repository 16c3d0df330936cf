"""Open the retrieval stack that settings describe (used by the CLI, ingest and the app)."""

from __future__ import annotations

from retrieval.embedder import E5Embedder, Embedder, SentenceTransformerEmbedder
from retrieval.event_store import EventStore
from retrieval.geo import open_geo_index
from retrieval.rerank import CrossEncoderReranker, FeatureReranker, Reranker
from retrieval.search import Retriever
from retrieval.settings import RetrievalSettings
from retrieval.vector_store import MilvusVectorStore


class ConfigError(ValueError):
    """Settings that name a backend without what it needs (a model for sentence-transformers)."""


def open_embedder(settings: RetrievalSettings) -> Embedder:
    """The configured embedder; nothing loads until first use."""
    if settings.embedder == "e5":
        return E5Embedder(num_threads=settings.embedder_threads)
    if not settings.embedder_model:
        raise ConfigError("PULS_EMBEDDER=sentence-transformers needs PULS_EMBEDDER_MODEL")
    return SentenceTransformerEmbedder(
        settings.embedder_model,
        device=settings.embedder_device,
        query_prefix=settings.embedder_query_prefix,
        passage_prefix=settings.embedder_passage_prefix,
    )


def open_reranker(settings: RetrievalSettings) -> Reranker:
    """The configured reranker (a cross-encoder loads its model here: once per process)."""
    if settings.reranker == "features":
        return FeatureReranker(settings)
    if not settings.reranker_model:
        raise ConfigError("PULS_RERANKER=cross-encoder needs PULS_RERANKER_MODEL")
    return CrossEncoderReranker(settings.reranker_model, settings, device=settings.reranker_device)


def open_retriever(
    settings: RetrievalSettings, embedder: Embedder | None = None, *, migrate: bool = False
) -> Retriever:
    """Embedder + Milvus + event store + reranker, as configured. Cheap unless a
    cross-encoder is configured: the embedder loads on first use or in `warm_up()`.

    `migrate` (ingest only) rebuilds a vector store that has an older schema instead of
    raising `VectorStoreSchemaError`. `embedder` replaces the configured one (Ray Serve passes
    a handle to its Embedder deployment)."""
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
    reranker = open_reranker(settings)
    return Retriever(settings, embedder, vectors, events, reranker, geo=open_geo_index(events))


def close_retriever(retriever: Retriever) -> None:
    retriever.vectors.close()
    retriever.events.close()
