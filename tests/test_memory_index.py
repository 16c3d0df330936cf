"""The in-memory index answers as Milvus does: the same events, in the same order, with the
same scores, for the same filters (time window, cities or departments, bounding box, missing
coordinates), on a real Milvus Lite store; and it follows the store's writes."""

from __future__ import annotations

import gc
import random
import weakref
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from retrieval import RetrievalSettings, close_retriever, open_retriever
from retrieval.filters import CandidateFilter
from retrieval.memory_index import BM25Postings, MemoryIndex
from retrieval.records import Chunking, Event
from retrieval.vector_store import Hit, MilvusVectorStore

pytestmark = pytest.mark.integration

DIM = 8
START = datetime(2025, 6, 1, tzinfo=UTC)
CITIES = [("Paris", "75011"), ("Lyon", "69001"), ("Valence", "26000"), ("Die", "26150")]
WORDS = "concert jazz orgue atelier enfant visite guidee eglise exposition photo conte".split()


def make_events(rng: random.Random, n: int) -> list[Event]:
    events = []
    for i in range(n):
        city, postal = rng.choice(CITIES)
        start = START + timedelta(days=rng.uniform(0, 60))
        located = rng.random() > 0.2  # some events have no coordinates
        events.append(
            Event(
                uid=f"e{i:04d}",
                source="t",
                title=" ".join(rng.sample(WORDS, 2)),
                start=start,
                end=start + timedelta(hours=rng.choice([1, 3, 24 * 10])),
                description=" ".join(rng.choices(WORDS, k=rng.randint(0, 12))),
                city=city,
                postal_code=postal,
                lat=45 + rng.uniform(-1, 1) if located else None,
                lon=4 + rng.uniform(-1, 1) if located else None,
            )
        )
    return events


def random_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def filters() -> list[CandidateFilter | None]:
    ts = int((START + timedelta(days=20)).timestamp())
    week = 7 * 86400
    return [
        None,
        CandidateFilter(ts),
        CandidateFilter(ts, ts + week),
        CandidateFilter(ts, cities=("lyon",)),
        CandidateFilter(ts, cities=("lyon", "nowhere", "die")),
        CandidateFilter(ts, ts + 4 * week, departments=("26",)),
        CandidateFilter(ts, cities=("paris",), departments=("26",)),
        CandidateFilter(ts - week, box=(44.5, 45.5, 3.5, 4.5)),
        CandidateFilter(ts, ts + 1, cities=("nowhere",)),
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MilvusVectorStore]:
    """300 events, each with 1 to 3 chunks, written in one batch, then closed and reopened as
    after `puls ingest`: closing seals Milvus Lite's segment. (Unsealed, Lite computes BM25's
    statistics over the rows that pass the filter; sealed, over the whole segment.)"""
    chunking = Chunking(words=10, overlap=2, max_chunks=2, dense_penalty=0.0)
    uri = str(tmp_path / "milvus.db")
    written = MilvusVectorStore(uri, "events", DIM, chunking=chunking)
    rng = np.random.default_rng(3)
    events = make_events(random.Random(3), 300)
    written.upsert(events, [random_vectors(rng, int(rng.integers(1, 4))) for _ in events])
    written.close()
    opened = MilvusVectorStore(uri, "events", DIM, chunking=chunking)
    yield opened
    opened.close()


def same_hits(ours: list[Hit], milvus: list[Hit]) -> None:
    """Same scores in the same order, and the same events (with the same winning chunk) at
    each score; only which of the events tied at the cut-off made it may differ."""
    assert [h.score for h in ours] == pytest.approx([abs(h.score) for h in milvus], rel=1e-5)
    if not ours:
        return
    cutoff = round(ours[-1].score, 4)

    def by_score(hits: list[Hit]) -> dict[float, set[tuple[str, int]]]:
        grouped: dict[float, set[tuple[str, int]]] = {}
        for h in hits:
            grouped.setdefault(round(abs(h.score), 4), set()).add((h.uid, h.chunk))
        grouped.pop(cutoff, None)
        return grouped

    assert by_score(ours) == by_score(milvus)


def test_dense_search_matches_milvus_under_every_filter(store: MilvusVectorStore) -> None:
    index = MemoryIndex.load(store)
    queries = random_vectors(np.random.default_rng(5), 4)
    for where in filters():
        for query in queries:
            same_hits(index.search(query, 20, where), store.search(query, 20, where))
    assert index.search(queries[0], 20, filters()[-1]) == []


def test_bm25_matches_milvus_under_every_filter(store: MilvusVectorStore) -> None:
    index = MemoryIndex.load(store)
    for where in filters():
        for query in ["concert de jazz", "atelier enfants", "visites guidées d'églises", "orgue"]:
            ours = index.search_lexical(query, 25, where)
            same_hits(ours, store.search_lexical(query, 25, where))
    assert index.search_lexical("xylophone", 10) == [] and index.search_lexical("", 10) == []


def test_a_dropped_index_is_freed_with_its_last_reference(store: MilvusVectorStore) -> None:
    """No reference cycle in the index: `puls serve` freezes its heap once warm, so an index
    replaced after an ingest must go when its last reference does, not wait for a cyclic
    collection that never comes."""
    index = MemoryIndex.load(store)
    query = random_vectors(np.random.default_rng(7), 1)[0]
    for where in filters():
        same_hits(index.search(query, 20, where), store.search(query, 20, where))
    freed = weakref.ref(index)
    gc.disable()
    try:
        del index
        assert freed() is None
    finally:
        gc.enable()


def test_description_chunks_count_less_exactly(store: MilvusVectorStore) -> None:
    """With a penalty, an event scores max(passage, chunk − penalty), whichever chunk wins."""
    store.chunking = replace(store.chunking, dense_penalty=0.05)
    index = MemoryIndex.load(store)
    query = random_vectors(np.random.default_rng(9), 1)[0]
    rows = list(store.scan_chunks(["vector"]))
    best: dict[str, tuple[float, int]] = {}
    for row in rows:
        score = float(np.asarray(row["vector"]) @ query) - (0.05 if row["chunk"] else 0.0)
        if row["uid"] not in best or score > best[row["uid"]][0]:
            best[row["uid"]] = (score, row["chunk"])
    expected = sorted(best.items(), key=lambda kv: -kv[1][0])[:10]
    hits = index.search(query, 10)
    assert [(h.uid, h.chunk) for h in hits] == [(uid, chunk) for uid, (_, chunk) in expected]
    assert [h.score for h in hits] == pytest.approx([s for _, (s, _) in expected], abs=1e-5)


def test_bm25_statistics_cover_the_whole_corpus() -> None:
    """A term in every document weighs little, a rare one much; a longer document with the
    same term counts scores lower (length normalisation)."""
    postings = BM25Postings(["jazz concert", "jazz", "jazz orgue orgue concert concert concert"])
    jazz, orgue = postings.scores(["jazz"]), postings.scores(["orgue"])
    assert jazz[1] > jazz[0] > jazz[2] > 0
    assert orgue[2] > jazz.max() and orgue[0] == orgue[1] == 0
    assert postings.scores(["jazz", "jazz"]) == pytest.approx(2 * jazz)  # query tf counts


def test_a_write_to_the_store_reloads_the_index(tmp_path: Path) -> None:
    settings = RetrievalSettings(data_dir=tmp_path, search_index="memory")
    retriever = open_retriever(settings, embedder=_FixedEmbedder())
    try:
        first = retriever.index()
        assert isinstance(first, MemoryIndex) and first.uids == []
        event = make_events(random.Random(1), 1)[0]
        retriever.vectors.upsert([event], random_vectors(np.random.default_rng(1), 1))
        reloaded = retriever.index()
        assert reloaded is not first and isinstance(reloaded, MemoryIndex)
        assert reloaded.uids == [event.uid] and retriever.index() is reloaded
        retriever.vectors.delete([event.uid])
        assert retriever.index().uids == []  # type: ignore[attr-defined]
    finally:
        close_retriever(retriever)
    milvus = RetrievalSettings(data_dir=tmp_path, search_index="auto", milvus_uri="http://m:19530")
    assert milvus.resolved_search_index() == "milvus"
    assert RetrievalSettings(data_dir=tmp_path).resolved_search_index() == "memory"


def test_loading_the_index_caps_blas_threads(tmp_path: Path) -> None:
    """OpenBLAS's idle threads spin after each product, on the cores llama.cpp needs."""
    settings = RetrievalSettings(data_dir=tmp_path, search_index="memory", search_threads=1)
    retriever = open_retriever(settings, embedder=_FixedEmbedder())
    try:
        with threadpool_limits(2, user_api="blas"):  # restored after the test
            retriever.index()
            blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
            assert blas and set(blas) == {1}
    finally:
        close_retriever(retriever)


class _FixedEmbedder:
    """The index test writes its own vectors; nothing is embedded."""

    dim = DIM

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        raise AssertionError("not called")

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        raise AssertionError("not called")
