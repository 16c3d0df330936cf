"""Event vectors in Milvus (Milvus Lite file embedded, a Milvus server in production).

One entity per event: the dense vector, a BM25 sparse vector that Milvus computes from
`text` (our folded, plural-stripped French: Milvus Lite's analyzer has no French stemmer),
and the scalar fields retrieval filters on (time window, city, department, coordinates),
so filtering happens inside both searches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pymilvus import DataType, Function, FunctionType, MilvusClient

from retrieval.embedder import Vectors
from retrieval.places import department_of
from retrieval.records import Event
from retrieval.text import fold, terms

TEXT_MAX_CHARS = 4000
# The opening of a long description states the theme; the rest is detail that made BM25
# match too loosely (dev set, docs/adr/0005: none 0.768, whole 0.751, first 500 chars 0.788
# NDCG@10).
LONG_DESCRIPTION_PREFIX_CHARS = 500


@dataclass(frozen=True)
class Hit:
    """A vector-search result: the event uid and its cosine similarity."""

    uid: str
    score: float


class MilvusVectorStore:
    """Upserts event vectors and searches them with scalar filters (Milvus boolean expressions)."""

    def __init__(
        self,
        uri: str,
        collection: str,
        dim: int,
        token: str | None = None,
        index_type: str = "FLAT",
    ) -> None:
        self._lite_path = None if "://" in uri else uri
        if self._lite_path is not None:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        self._client = MilvusClient(uri, token=token or "")
        self.collection = collection
        self.dim = dim
        self.index_type = index_type
        if not self._client.has_collection(collection):
            self._create()
        self._client.load_collection(collection)  # a reopened collection starts released

    def _create(self) -> None:
        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("uid", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
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
        schema.add_field("start_ts", DataType.INT64)
        schema.add_field("end_ts", DataType.INT64)
        schema.add_field("city_key", DataType.VARCHAR, max_length=200)
        schema.add_field("dept", DataType.VARCHAR, max_length=8)
        schema.add_field("lat", DataType.DOUBLE, nullable=True)
        schema.add_field("lon", DataType.DOUBLE, nullable=True)
        index = self._client.prepare_index_params()
        index.add_index("vector", metric_type="COSINE", index_type=self.index_type)
        index.add_index("sparse", metric_type="BM25", index_type="SPARSE_INVERTED_INDEX")
        self._client.create_collection(self.collection, schema=schema, index_params=index)

    def close(self) -> None:
        """Close the client and, for Milvus Lite, its server: otherwise the server and its
        data-dir lock live until process exit, and another process (the Ray ingress replica
        after `puls demo`'s ingest) cannot open the store."""
        self._client.close()
        if self._lite_path is not None:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(self._lite_path)

    def check_health(self) -> None:
        """Raises if the collection cannot be read."""
        self._client.get_collection_stats(self.collection)

    def upsert(self, events: Sequence[Event], vectors: Vectors) -> None:
        """Write one entity per event; an existing uid is replaced."""
        rows = [
            {
                "uid": event.uid,
                "vector": vector.tolist(),
                "text": lexical_text(event),
                "start_ts": int(event.start.timestamp()),
                "end_ts": int(event.end.timestamp()),
                "city_key": fold(event.city),
                "dept": department_of(event.postal_code, event.address),
                "lat": event.lat,
                "lon": event.lon,
            }
            for event, vector in zip(events, vectors, strict=True)
        ]
        if rows:
            self._client.upsert(self.collection, rows)

    def search(self, vector: Vectors, limit: int, filter_expr: str = "") -> list[Hit]:
        """The `limit` nearest events by cosine that satisfy `filter_expr`, best first."""
        result = self._client.search(
            self.collection,
            data=[vector.tolist()],
            anns_field="vector",
            limit=limit,
            filter=filter_expr,
            output_fields=["uid"],
        )
        return [
            Hit(uid=str(hit["entity"]["uid"]), score=float(hit["distance"])) for hit in result[0]
        ]

    def search_lexical(self, query: str, limit: int, filter_expr: str = "") -> list[Hit]:
        """The `limit` best BM25 matches of `query` (folded and stemmed like the indexed text)."""
        text = " ".join(terms(query))
        if not text:
            return []
        result = self._client.search(
            self.collection,
            data=[text],
            anns_field="sparse",
            limit=limit,
            filter=filter_expr,
            output_fields=["uid"],
            search_params={"metric_type": "BM25"},
        )
        return [
            Hit(uid=str(hit["entity"]["uid"]), score=float(hit["distance"])) for hit in result[0]
        ]

    def vectors(self, uids: Sequence[str], batch: int = 500) -> dict[str, list[float]]:
        """Stored dense vectors by uid (benchmarks replicate them instead of re-embedding)."""
        found: dict[str, list[float]] = {}
        for i in range(0, len(uids), batch):
            keys = ", ".join(f'"{u}"' for u in uids[i : i + batch])
            rows = self._client.query(
                self.collection, filter=f"uid in [{keys}]", output_fields=["uid", "vector"]
            )
            found.update((row["uid"], list(row["vector"])) for row in rows)
        return found

    def count(self) -> int:
        return int(self._client.get_collection_stats(self.collection)["row_count"])


def lexical_text(event: Event) -> str:
    """What BM25 indexes: title twice (titles name the theme), keywords, place, the short
    description and the opening of the long one."""
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
