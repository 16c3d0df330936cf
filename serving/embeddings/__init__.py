"""`/v1/embeddings`: the retriever's embedder (multilingual-e5-small) behind OpenAI's shape."""

from serving.embeddings.protocol import EmbeddingRequest, EmbeddingResponse
from serving.embeddings.service import E5TokenCounter, EmbeddingService, TokenCounter

__all__ = [
    "E5TokenCounter",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "EmbeddingService",
    "TokenCounter",
]
