"""Find events for French requests: parse → filtered dense candidates → scoring."""

from retrieval.build import close_retriever, open_retriever
from retrieval.records import Event
from retrieval.search import Retriever, ScoredEvent, SearchResult
from retrieval.settings import RetrievalSettings

__all__ = [
    "Event",
    "RetrievalSettings",
    "Retriever",
    "ScoredEvent",
    "SearchResult",
    "close_retriever",
    "open_retriever",
]
