"""The vector store's collections, copied into numpy: candidates in milliseconds on a laptop.

Milvus Lite is a pure-Python engine: each search scans its segments in Python (25-40 ms per
search at 5k events, 230-680 ms per query at 100k here, docs/benchmarks.md). The embedded
profile therefore loads what the searches read, once, into arrays:

    dense    every chunk vector (n_chunks × dim, L2-normalised), the event of each chunk
             and its number; an event scores its best chunk, description chunks less the
             chunking's dense penalty (exactly, where the Milvus path over-fetches)
    lexical  BM25 postings over the event texts Milvus indexed, with Milvus's formula and
             parameters, but with corpus statistics over the whole collection (Milvus Lite
             computes them per segment, so its scores shift with how segments were sealed)
    filters  the scalar fields of each event (`CandidateFilter.mask`)

Milvus stays the store of record: ingest writes there, and the copy is reloaded when the
store it came from was written since (`MilvusVectorStore.generation`). A Milvus server
searches its own indexes instead (`PULS_SEARCH_INDEX`, docs/adr/0005 decision 9).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from retrieval.embedder import Vectors
from retrieval.filters import CandidateFilter, Codes, FilterColumns, Mask
from retrieval.text import terms
from retrieval.vector_store import BM25_B, BM25_K1, Hit, MilvusVectorStore

FILTER_FIELDS = ["start_ts", "end_ts", "city_key", "dept", "lat", "lon"]
# Copying a row out of the vector matrix costs about 7 times reading it in one matrix-vector
# product (100k × 384 here: 42 ms against 6 ms): below 1/7 of the rows, copy them.
GATHER_COST = 7


@dataclass(frozen=True)
class Postings:
    """The events that contain one term and its BM25 weight in each (tf saturated and
    length-normalised, before IDF)."""

    events: NDArray[np.int64]
    weights: NDArray[np.float32]
    idf: float


class BM25Postings:
    """BM25 over whitespace-separated index text (already folded and stemmed at ingest).

    score(D, Q) = Σ_t qtf(t) · idf(t) · tf(t,D)·(k1+1) / (tf(t,D) + k1·(1 − b + b·|D|/avgdl)),
    idf(t) = ln(1 + (N − df + 0.5) / (df + 0.5)): Milvus's BM25 (its Lite engine,
    `milvus_lite/index/sparse_inverted.py`), with N, df and avgdl over all events.
    """

    def __init__(self, texts: list[str], k1: float = BM25_K1, b: float = BM25_B) -> None:
        counts = [Counter(text.split()) for text in texts]
        lengths = np.array([sum(c.values()) for c in counts], dtype=np.float64)
        avgdl = float(lengths.mean()) if len(texts) and lengths.sum() else 1.0
        by_term: dict[str, list[tuple[int, int]]] = {}
        for i, count in enumerate(counts):
            for term, freq in count.items():
                by_term.setdefault(term, []).append((i, freq))
        n = len(texts)
        self.n = n
        self.postings: dict[str, Postings] = {}
        for term, pairs in by_term.items():
            events = np.fromiter((i for i, _ in pairs), dtype=np.int64, count=len(pairs))
            tf = np.fromiter((t for _, t in pairs), dtype=np.float64, count=len(pairs))
            norm = k1 * (1.0 - b + b * lengths[events] / avgdl)
            weights = (tf * (k1 + 1.0) / (tf + norm)).astype(np.float32)
            df = len(pairs)
            idf = math.log((n - df + 0.5) / (df + 0.5) + 1.0)
            self.postings[term] = Postings(events, weights, idf)

    def scores(self, query_terms: list[str]) -> NDArray[np.float64]:
        """The BM25 score of every event for these (analysed) terms; 0 without a match."""
        scores = np.zeros(self.n, dtype=np.float64)
        for term, qtf in Counter(query_terms).items():
            postings = self.postings.get(term)
            if postings is not None:
                scores[postings.events] += qtf * postings.idf * postings.weights
        return scores


class MemoryIndex:
    """A `CandidateIndex` over numpy copies of a `MilvusVectorStore`'s collections.

    >>> index = MemoryIndex.load(store)
    >>> index.search(query_vector, 100, CandidateFilter(start_ts=now))
    """

    def __init__(
        self,
        uids: list[str],
        columns: FilterColumns,
        chunk_vectors: Vectors,
        chunk_events: NDArray[np.int64],
        chunk_numbers: NDArray[np.int64],
        lexical: BM25Postings,
        dense_penalty: float = 0.0,
        generation: int = 0,
    ) -> None:
        self.uids = uids
        self.columns = columns
        self.chunk_vectors = chunk_vectors
        self.chunk_events = chunk_events
        self.chunk_numbers = chunk_numbers
        self.lexical = lexical
        self.dense_penalty = dense_penalty
        self.generation = generation

    @classmethod
    def load(cls, store: MilvusVectorStore) -> MemoryIndex:
        """Read every event and chunk entity of `store` (at 5k events ~1 s here)."""
        generation = store.generation
        events = sorted(store.scan_events(["text", *FILTER_FIELDS]), key=lambda r: r["uid"])
        uids = [row["uid"] for row in events]
        position = {uid: i for i, uid in enumerate(uids)}
        chunks = sorted(  # by event, then chunk number: a tie goes to the lowest chunk
            (row for row in store.scan_chunks(["vector"]) if row["uid"] in position),
            key=lambda r: (position[r["uid"]], r["chunk"]),
        )
        vectors = np.asarray([row["vector"] for row in chunks], dtype=np.float32)
        vectors = vectors.reshape(len(chunks), store.dim)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors /= np.where(norms > 0, norms, 1.0)  # Milvus's COSINE normalises both sides
        return cls(
            uids,
            _columns(events),
            vectors,
            np.array([position[row["uid"]] for row in chunks], dtype=np.int64),
            np.array([row["chunk"] for row in chunks], dtype=np.int64),
            BM25Postings([row["text"] for row in events]),
            dense_penalty=store.chunking.dense_penalty,
            generation=generation,
        )

    def _mask(self, where: CandidateFilter | None) -> Mask:
        if where is None:
            return np.ones(len(self.uids), dtype=bool)
        return where.mask(self.columns)

    def search(
        self, vector: Vectors, limit: int, where: CandidateFilter | None = None
    ) -> list[Hit]:
        """The `limit` events nearest `vector` by cosine, each scored by its best chunk."""
        allowed = self._mask(where)
        rows = np.flatnonzero(allowed[self.chunk_events])
        if rows.size == 0:
            return []
        query = np.asarray(vector, dtype=np.float32)
        query = query / (np.linalg.norm(query) or 1.0)
        if rows.size * GATHER_COST < len(self.chunk_events):
            scores = self.chunk_vectors[rows] @ query  # few rows pass: copy just those
        else:
            scores = (self.chunk_vectors @ query)[rows]
        numbers = self.chunk_numbers[rows]
        scores = np.where(numbers > 0, scores - self.dense_penalty, scores)
        owners = self.chunk_events[rows]
        best = np.full(len(self.uids), -np.inf, dtype=np.float32)
        np.maximum.at(best, owners, scores)
        winning = scores == best[owners]
        chunk_of = np.zeros(len(self.uids), dtype=np.int64)
        chunk_of[owners[winning][::-1]] = numbers[winning][::-1]  # the lowest chunk on a tie
        return self._top(best.astype(np.float64), np.isfinite(best), limit, chunk_of)

    def search_lexical(
        self, query: str, limit: int, where: CandidateFilter | None = None
    ) -> list[Hit]:
        """The `limit` best BM25 matches of `query`, one per event (positive scores)."""
        query_terms = terms(query)
        if not query_terms:
            return []
        scores = self.lexical.scores(query_terms)
        return self._top(scores, (scores > 0) & self._mask(where), limit)

    def _top(
        self,
        scores: NDArray[np.float64],
        keep: Mask,
        limit: int,
        chunk_of: NDArray[np.int64] | None = None,
    ) -> list[Hit]:
        """The `limit` best kept rows, best first (ties: the smaller uid first)."""
        rows = np.flatnonzero(keep)
        if rows.size > limit:
            rows = rows[np.argpartition(-scores[rows], limit - 1)[:limit]]
        rows = rows[np.lexsort((rows, -scores[rows]))]
        return [
            Hit(self.uids[i], float(scores[i]), 0 if chunk_of is None else int(chunk_of[i]))
            for i in rows
        ]


def _columns(events: list[dict[str, object]]) -> FilterColumns:
    def floats(name: str) -> NDArray[np.float64]:
        return np.array(
            [np.nan if row[name] is None else row[name] for row in events], dtype=np.float64
        )

    return FilterColumns(
        start_ts=np.array([row["start_ts"] for row in events], dtype=np.int64),
        end_ts=np.array([row["end_ts"] for row in events], dtype=np.int64),
        city_key=Codes.of([str(row["city_key"]) for row in events]),
        dept=Codes.of([str(row["dept"]) for row in events]),
        lat=floats("lat"),
        lon=floats("lon"),
    )
