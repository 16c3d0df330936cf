"""Event vectors in Milvus (Milvus Lite file embedded, a Milvus server in production).

Two collections (docs/adr/0003-chunking.md):

    {collection}_chunks   one entity per chunk of an event, primary key `{uid}#{n}`, with its
                          `uid`, its `chunk` number and its dense e5 vector:
                            chunk 0     the event passage (title, keywords, place, short
                                        description)
                            chunk 1..k  windows of the long description, title-prefixed
    {collection}          one entity per event, primary key `uid`: the BM25 sparse vector
                          that Milvus computes from `text` (our folded, stemmed French: Milvus
                          Lite's analyzer has no French stemmer), and the event's
                          `content_hash` (with the chunk settings), written last

BM25 keeps one document per event: chunk entities in the same collection (with empty text)
changed its corpus statistics (BM25 alone lost 0.013 NDCG@10 on the dev set, the hybrid
0.017, docs/adr/0003). Every entity of both carries the scalar fields retrieval filters on
(time window, city, department, coordinates), so filtering happens inside both searches, and
both searches return ONE hit per event (its best chunk for the dense one).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pymilvus import DataType, Function, FunctionType, MilvusClient

from retrieval.embedder import Vectors
from retrieval.filters import CandidateFilter
from retrieval.places import department_of
from retrieval.records import Chunking, Event
from retrieval.text import fold, terms

TEXT_MAX_CHARS = 4000
# The opening of a long description states the theme; the rest is detail that made BM25
# match too loosely (dev set, docs/adr/0005: none 0.768, whole 0.751, first 500 chars 0.788
# NDCG@10).
LONG_DESCRIPTION_PREFIX_CHARS = 500
MILVUS_MAX_TOPK = 16384
CHUNKS_SUFFIX = "_chunks"
# BM25 parameters, given to Milvus and used by the in-memory index alike: Milvus Lite's
# defaults (a Milvus server's default k1 is 1.2).
BM25_K1 = 1.5
BM25_B = 0.75
_DELETE_BATCH = 500


@dataclass(frozen=True)
class Hit:
    """A search result: the event uid, its score, and which of its chunks scored it."""

    uid: str
    score: float
    chunk: int = 0


class CandidateIndex(Protocol):
    """Where candidates come from: the Milvus collections themselves, or their in-memory
    copy (retrieval/memory_index.py). Both return one hit per event, best first."""

    def search(
        self, vector: Vectors, limit: int, where: CandidateFilter | None = None
    ) -> list[Hit]:
        """The `limit` events nearest `vector` by cosine (an event scores its best chunk,
        description chunks less the chunking's dense penalty)."""
        ...

    def search_lexical(
        self, query: str, limit: int, where: CandidateFilter | None = None
    ) -> list[Hit]:
        """The `limit` best BM25 matches of `query` (positive scores), one per event."""
        ...


class VectorStoreSchemaError(RuntimeError):
    """The collections were built by an older Puls; the message says how to rebuild them."""


def _old_schema(uri: str, collection: str) -> VectorStoreSchemaError:
    return VectorStoreSchemaError(
        f"the vector store {uri} (collection {collection!r}) has the old "
        "one-entity-per-event schema: run `puls reindex` (or any `puls ingest`) "
        "to rebuild it from the event store"
    )


def _has_current_schema(client: MilvusClient, collection: str) -> bool:
    fields = {f["name"] for f in client.describe_collection(collection)["fields"]}
    return "content_hash" in fields and "vector" not in fields


def check_schema(uri: str, collection: str, token: str | None = None) -> None:
    """Raise `VectorStoreSchemaError` when `collection` was built by an older Puls. Creates
    nothing and needs no embedder: `puls serve` checks before starting its workers."""
    lite = "://" not in uri
    if lite and not Path(uri).exists():
        return  # nothing built yet: the first ingest creates the current schema
    client = MilvusClient(uri, token=token or "")
    try:
        if client.has_collection(collection) and not _has_current_schema(client, collection):
            raise _old_schema(uri, collection)
    finally:
        client.close()
        if lite:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(uri)


def _literal(value: str) -> str:
    """A Milvus expression string literal (double-quoted, escaped)."""
    return json.dumps(value, ensure_ascii=False)


def uid_filter(uids: Iterable[str]) -> str:
    return "uid in [{}]".format(", ".join(_literal(u) for u in uids))


def _and(*clauses: str) -> str:
    return " and ".join(f"({c})" for c in clauses if c)


def _add_filter_fields(schema: Any) -> None:
    schema.add_field("start_ts", DataType.INT64)
    schema.add_field("end_ts", DataType.INT64)
    schema.add_field("city_key", DataType.VARCHAR, max_length=200)
    schema.add_field("dept", DataType.VARCHAR, max_length=8)
    schema.add_field("lat", DataType.DOUBLE, nullable=True)
    schema.add_field("lon", DataType.DOUBLE, nullable=True)


class MilvusVectorStore:
    """Upserts events (their chunks) and searches them with scalar filters (Milvus boolean
    expressions).

    `migrate=True` (ingest) drops collections that have the pre-chunking schema and creates
    them anew (vectors are derived data: ingest re-embeds from the event store); otherwise
    such a collection raises `VectorStoreSchemaError` with a one-line message.
    """

    def __init__(
        self,
        uri: str,
        collection: str,
        dim: int,
        token: str | None = None,
        index_type: str = "FLAT",
        chunking: Chunking | None = None,
        migrate: bool = False,
    ) -> None:
        self._lite_path = None if "://" in uri else uri
        if self._lite_path is not None:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        self._client = MilvusClient(uri, token=token or "")
        self.uri = uri
        self.collection = collection
        self.chunks_collection = collection + CHUNKS_SUFFIX
        self.dim = dim
        self.index_type = index_type
        self.chunking = chunking or Chunking()
        self.migrated = False
        self.generation = 0  # bumped by every write: an in-memory copy of an older one is stale
        if self._client.has_collection(collection) and not _has_current_schema(
            self._client, collection
        ):
            if not migrate:
                self.close()
                raise _old_schema(uri, collection)
            for name in (collection, self.chunks_collection):
                if self._client.has_collection(name):
                    self._client.drop_collection(name)
            self.migrated = True
        if not self._client.has_collection(collection):
            self._create_events()
        if not self._client.has_collection(self.chunks_collection):
            self._create_chunks()
        for name in (collection, self.chunks_collection):
            self._client.load_collection(name)  # a reopened collection starts released

    def _create_events(self) -> None:
        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("uid", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("content_hash", DataType.VARCHAR, max_length=96)
        schema.add_field(
            "text",
            DataType.VARCHAR,
            max_length=TEXT_MAX_CHARS * 2,
            enable_analyzer=True,
            analyzer_params={"type": "standard"},
        )
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            Function(
                name="bm25",
                function_type=FunctionType.BM25,
                input_field_names=["text"],
                output_field_names=["sparse"],
            )
        )
        _add_filter_fields(schema)
        index = self._client.prepare_index_params()
        index.add_index(
            "sparse",
            metric_type="BM25",
            index_type="SPARSE_INVERTED_INDEX",
            params={"bm25_k1": BM25_K1, "bm25_b": BM25_B},
        )
        self._client.create_collection(self.collection, schema=schema, index_params=index)

    def _create_chunks(self) -> None:
        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=80)
        schema.add_field("uid", DataType.VARCHAR, max_length=64)
        schema.add_field("chunk", DataType.INT64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        _add_filter_fields(schema)
        index = self._client.prepare_index_params()
        index.add_index("vector", metric_type="COSINE", index_type=self.index_type)
        index.add_index("uid", index_type="INVERTED")
        self._client.create_collection(self.chunks_collection, schema=schema, index_params=index)

    def close(self) -> None:
        """Close the client and, for Milvus Lite, its server: otherwise the server and its
        data-dir lock live until process exit, and another process (the Ray ingress replica
        after `puls demo`'s ingest) cannot open the store."""
        self._client.close()
        if self._lite_path is not None:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(self._lite_path)

    def check_health(self) -> None:
        """Raises if a collection cannot be read."""
        self._client.get_collection_stats(self.collection)
        self._client.get_collection_stats(self.chunks_collection)

    def index_key(self, content_hash: str) -> str:
        """What the event entity stores as `content_hash`: the event's content hash and the
        chunk settings. A stored key that differs means the event must be re-embedded."""
        return f"{content_hash}:{self.chunking.key}"

    def chunk_texts(self, event: Event) -> list[str]:
        """The texts to embed for `event`, chunk 0 first (`upsert` takes their vectors)."""
        return event.chunk_texts(self.chunking)

    def upsert(self, events: Sequence[Event], vectors: Vectors | Sequence[Vectors]) -> None:
        """Replace each event's entities: its old chunks are deleted first (an event whose
        description shrank keeps no stale chunk), then its chunks are written, then its
        event entity (BM25 text and content hash) last, as the commit marker.

        `vectors` holds, per event, the vectors of `chunk_texts(event)` in order (an array
        of shape (n_chunks, dim)); a single 2-D array with one row per event writes chunk 0
        only."""
        if not events:
            return
        per_event: list[Vectors]
        if isinstance(vectors, np.ndarray) and vectors.ndim == 2:
            per_event = [vectors[i : i + 1] for i in range(len(vectors))]
        else:
            per_event = list(vectors)
        if len(per_event) != len(events):
            raise ValueError(f"{len(events)} events but vectors for {len(per_event)}")
        event_rows: list[dict[str, Any]] = []
        chunk_rows: list[dict[str, Any]] = []
        for event, chunks in zip(events, per_event, strict=True):
            common = {
                "uid": event.uid,
                "start_ts": int(event.start.timestamp()),
                "end_ts": int(event.end.timestamp()),
                "city_key": fold(event.city),
                "dept": department_of(event.postal_code, event.address),
                "lat": event.lat,
                "lon": event.lon,
            }
            event_rows.append(
                {
                    **common,
                    "content_hash": self.index_key(event.content_hash()),
                    "text": lexical_text(event),
                }
            )
            chunk_rows.extend(
                {**common, "id": f"{event.uid}#{n}", "chunk": n, "vector": vector.tolist()}
                for n, vector in enumerate(np.atleast_2d(chunks))
            )
        self.generation += 1
        self._delete(self.chunks_collection, [e.uid for e in events])
        self._client.upsert(self.chunks_collection, chunk_rows)
        self._client.upsert(self.collection, event_rows)

    def delete(self, uids: Sequence[str]) -> None:
        """Remove these events and every chunk of theirs (unknown uids are ignored)."""
        self.generation += 1
        self._delete(self.collection, uids)
        self._delete(self.chunks_collection, uids)

    def _delete(self, collection: str, uids: Sequence[str]) -> None:
        for i in range(0, len(uids), _DELETE_BATCH):
            self._client.delete(collection, filter=uid_filter(uids[i : i + _DELETE_BATCH]))

    def search(
        self, vector: Vectors, limit: int, where: CandidateFilter | None = None
    ) -> list[Hit]:
        """The `limit` events nearest by cosine that pass `where`, best first.

        An event scores its best chunk, a description chunk's cosine less
        `chunking.dense_penalty`. Without a penalty Milvus groups the chunks by uid itself;
        with one, chunks are over-fetched and grouped here.
        """
        penalty = self.chunking.dense_penalty
        filter_expr = where.expr() if where is not None else ""
        if penalty <= 0:
            return self._search_dense(vector, limit, filter_expr, group=True)
        fetch = min(limit * (1 + self.chunking.max_chunks), MILVUS_MAX_TOPK)
        best: dict[str, Hit] = {}
        for hit in self._search_dense(vector, fetch, filter_expr):
            score = hit.score if hit.chunk == 0 else hit.score - penalty
            if hit.uid not in best or score > best[hit.uid].score:
                best[hit.uid] = Hit(hit.uid, score, hit.chunk)
        return sorted(best.values(), key=lambda h: h.score, reverse=True)[:limit]

    def _search_dense(
        self, vector: Vectors, limit: int, filter_expr: str, group: bool = False
    ) -> list[Hit]:
        extra: dict[str, Any] = {"group_by_field": "uid"} if group else {}
        result = self._client.search(
            self.chunks_collection,
            data=[vector.tolist()],
            anns_field="vector",
            limit=limit,
            filter=filter_expr,
            output_fields=["uid", "chunk"],
            **extra,
        )
        return [_hit(hit) for hit in result[0]]

    def search_lexical(
        self, query: str, limit: int, where: CandidateFilter | None = None
    ) -> list[Hit]:
        """The `limit` best BM25 matches of `query` (folded and stemmed like the indexed text),
        one per event."""
        text = " ".join(terms(query))
        if not text:
            return []
        result = self._client.search(
            self.collection,
            data=[text],
            anns_field="sparse",
            limit=limit,
            filter=where.expr() if where is not None else "",
            output_fields=["uid"],
            search_params={"metric_type": "BM25"},
        )
        return [_hit(hit) for hit in result[0]]

    def vectors(self, uids: Sequence[str], batch: int = 500) -> dict[str, list[float]]:
        """Stored chunk-0 vectors by uid (benchmarks replicate them instead of re-embedding)."""
        found: dict[str, list[float]] = {}
        for i in range(0, len(uids), batch):
            rows = self._client.query(
                self.chunks_collection,
                filter=_and(uid_filter(uids[i : i + batch]), "chunk == 0"),
                output_fields=["uid", "vector"],
            )
            found.update((row["uid"], list(row["vector"])) for row in rows)
        return found

    def hashes(self) -> dict[str, str]:
        """uid → stored `index_key` of every indexed event: what ingest compares against."""
        return {row["uid"]: row["content_hash"] for row in self.scan_events(["content_hash"])}

    def scan_events(self, fields: Sequence[str]) -> Iterator[dict[str, Any]]:
        """Every event entity's `uid` and `fields` (the in-memory index loads from this)."""
        return self._scan(self.collection, ["uid", *fields])

    def scan_chunks(self, fields: Sequence[str]) -> Iterator[dict[str, Any]]:
        """Every chunk entity's `uid`, `chunk` and `fields`."""
        return self._scan(self.chunks_collection, ["uid", "chunk", *fields])

    def _scan(self, collection: str, fields: list[str]) -> Iterator[dict[str, Any]]:
        with _quiet_iterator_warning():
            iterator = self._client.query_iterator(
                collection, batch_size=5000, filter="", output_fields=fields
            )
            try:
                while batch := iterator.next():
                    yield from batch
            finally:
                iterator.close()

    def count(self) -> int:
        """Indexed events."""
        return self._count(self.collection, 'uid != ""')

    def count_entities(self) -> int:
        """Chunk entities: every chunk of every event."""
        return self._count(self.chunks_collection, "chunk >= 0")

    def _count(self, collection: str, expr: str) -> int:
        rows = self._client.query(collection, filter=expr, output_fields=["count(*)"])
        return int(rows[0]["count(*)"])


def _hit(hit: dict[str, Any]) -> Hit:
    entity = hit["entity"]
    return Hit(
        uid=str(entity["uid"]), score=float(hit["distance"]), chunk=int(entity.get("chunk", 0))
    )


@contextmanager
def _quiet_iterator_warning() -> Iterator[None]:
    """Milvus Lite has no MVCC timestamp to give the query iterator, which warns about it on
    every call and then works as documented (client-side timestamp)."""
    logger = logging.getLogger("pymilvus.client.iterator.query_iterator")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def lexical_text(event: Event) -> str:
    """What BM25 indexes, once per event: title twice (titles name the theme), keywords,
    place, the short description and the opening of the long one."""
    raw = " ".join(
        [
            event.title,
            event.title,
            " ".join(event.keywords),
            event.venue,
            event.city,
            event.description,
            event.long_description[:LONG_DESCRIPTION_PREFIX_CHARS],
        ]
    )
    return " ".join(terms(raw))[:TEXT_MAX_CHARS]
