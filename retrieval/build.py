"""Open the retrieval stack that settings describe (used by the CLI, ingest and the app)."""

from __future__ import annotations

from retrieval.embedder import E5Embedder
from retrieval.event_store import EventStore
from retrieval.geo import open_geo_index
from retrieval.search import Retriever
from retrieval.settings import RetrievalSettings
from retrieval.vector_store import MilvusVectorStore


def open_retriever(settings: RetrievalSettings) -> Retriever:
    """Embedder + Milvus + event store. Cheap: models load on first use or in `warm_up()`."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    embedder = E5Embedder()
    vectors = MilvusVectorStore(
        settings.resolved_milvus_uri(),
        settings.collection,
        embedder.dim,
        settings.milvus_token,
        settings.milvus_index_type,
    )
    events = EventStore(settings.resolved_database_url())
    return Retriever(settings, embedder, vectors, events, geo=open_geo_index(events))


def close_retriever(retriever: Retriever) -> None:
    retriever.vectors.close()
    retriever.events.close()
