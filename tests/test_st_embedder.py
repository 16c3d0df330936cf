"""The gpu profile's embedder plumbing, with a tiny sentence-transformers model built here.

Production loads BAAI/bge-m3 (1024-d) from a local directory; no such model can be
downloaded here, so this test builds a 1-layer BERT with random weights plus mean pooling,
saves it as a sentence-transformers directory and selects it by configuration
(`PULS_EMBEDDER=sentence-transformers`, `PULS_EMBEDDER_MODEL=<dir>`). It checks the wiring
(dimension, normalisation, prefixes, a Milvus collection of the model's size, a search
through it), not retrieval quality.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from retrieval import RetrievalSettings, close_retriever, open_retriever
from retrieval.embedder import SentenceTransformerEmbedder
from retrieval.records import Event
from tests.tiny_models import save_tiny_sentence_transformer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PARIS = ZoneInfo("Europe/Paris")
DIM = 24


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base, directory = tmp_path_factory.mktemp("tiny-bert"), tmp_path_factory.mktemp("tiny-st")
    return save_tiny_sentence_transformer(base, directory, DIM)


def test_vectors_have_the_models_size_and_unit_length(tiny_model: Path) -> None:
    embedder = SentenceTransformerEmbedder(str(tiny_model), device="cpu")
    assert embedder.dim == DIM
    vectors = embedder.embed_passages(["concert jazz paris", "atelier poterie"])
    assert vectors.shape == (2, DIM) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_prefixes_are_applied_per_side(tiny_model: Path) -> None:
    plain = SentenceTransformerEmbedder(str(tiny_model), device="cpu")
    prefixed = SentenceTransformerEmbedder(
        str(tiny_model), device="cpu", query_prefix="query: ", passage_prefix="passage: "
    )
    text = ["concert jazz"]
    assert np.allclose(plain.embed_queries(text), plain.embed_passages(text))
    assert not np.allclose(prefixed.embed_queries(text), prefixed.embed_passages(text))
    assert np.allclose(prefixed.embed_queries(text), plain.embed_queries(["query: concert jazz"]))


def test_the_configured_dtype_rounds_the_vectors_but_returns_float32(tiny_model: Path) -> None:
    """bfloat16 weights (PULS_EMBEDDER_DTYPE) give vectors a little off the float32 ones,
    still float32 arrays of unit length for Milvus and the in-memory index."""
    from retrieval.build import open_embedder

    def vectors(dtype: str | None) -> np.ndarray:
        settings = RetrievalSettings(
            embedder="sentence-transformers",
            embedder_model=str(tiny_model),
            embedder_device="cpu",
            embedder_dtype=dtype,
        )
        return open_embedder(settings).embed_passages(["concert jazz paris", "atelier poterie"])

    full, half = vectors(None), vectors("bfloat16")
    assert half.dtype == np.float32 and np.allclose(np.linalg.norm(half, axis=1), 1.0, atol=1e-2)
    assert not np.array_equal(full, half)
    assert np.allclose(full, half, atol=0.05)


def test_configured_embedder_fills_and_searches_its_own_collection(
    tiny_model: Path, tmp_path: Path
) -> None:
    settings = RetrievalSettings(
        data_dir=tmp_path,
        embedder="sentence-transformers",
        embedder_model=str(tiny_model),
        embedder_device="cpu",
    )
    retriever = open_retriever(settings)
    try:
        assert retriever.embedder.dim == DIM
        start = datetime(2025, 6, 10, 20, tzinfo=PARIS)
        events = [
            Event(uid=f"e{i}", source="t", title=title, start=start, end=start + timedelta(hours=2))
            for i, title in enumerate(["concert jazz", "atelier poterie", "expo orgue"])
        ]
        vectors = retriever.embedder.embed_passages([e.passage() for e in events])
        retriever.vectors.upsert(events, vectors)
        retriever.events.upsert(events)
        found = retriever.search("concert jazz", datetime(2025, 6, 1, 10, tzinfo=PARIS))
        assert found.events and found.events[0].event.uid == "e0"
    finally:
        close_retriever(retriever)
