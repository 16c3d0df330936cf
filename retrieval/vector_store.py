"""Event vectors in Milvus (Milvus Lite file embedded, a Milvus server in production).

One entity per event: the dense vector plus the scalar fields that retrieval filters on
(time window, city, coordinates), so filtering happens inside the vector search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pymilvus import DataType, MilvusClient

from retrieval.embedder import Vectors
from retrieval.records import Event
from retrieval.text import fold


@dataclass(frozen=True)
class Hit:
    """A vector-search result: the event uid and its cosine similarity."""

    uid: str
    score: float


class MilvusVectorStore:
    """Upserts event vectors and searches them with scalar filters (Milvus boolean expressions)."""

    def __init__(self, uri: str, collection: str, dim: int, token: str | None = None) -> None:
        if "://" not in uri:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        self._client = MilvusClient(uri, token=token or "")
        self.collection = collection
        self.dim = dim
        if not self._client.has_collection(collection):
            self._create()
        self._client.load_collection(collection)  # a reopened collection starts released

    def _create(self) -> None:
        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("uid", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("start_ts", DataType.INT64)
        schema.add_field("end_ts", DataType.INT64)
        schema.add_field("city_key", DataType.VARCHAR, max_length=200)
        schema.add_field("lat", DataType.DOUBLE, nullable=True)
        schema.add_field("lon", DataType.DOUBLE, nullable=True)
        index = self._client.prepare_index_params()
        index.add_index("vector", metric_type="COSINE", index_type="AUTOINDEX")
        self._client.create_collection(self.collection, schema=schema, index_params=index)

    def close(self) -> None:
        self._client.close()

    def check_health(self) -> None:
        """Raises if the collection cannot be read."""
        self._client.get_collection_stats(self.collection)

    def upsert(self, events: Sequence[Event], vectors: Vectors) -> None:
        """Write one entity per event; an existing uid is replaced."""
        rows = [
            {
                "uid": event.uid,
                "vector": vector.tolist(),
                "start_ts": int(event.start.timestamp()),
                "end_ts": int(event.end.timestamp()),
                "city_key": fold(event.city),
                "lat": event.lat,
                "lon": event.lon,
            }
            for event, vector in zip(events, vectors, strict=True)
        ]
        if rows:
            self._client.upsert(self.collection, rows)

    def search(self, vector: Vectors, limit: int, filter_expr: str = "") -> list[Hit]:
        """The `limit` nearest events that satisfy `filter_expr`, best first."""
        result = self._client.search(
            self.collection,
            data=[vector.tolist()],
            limit=limit,
            filter=filter_expr,
            output_fields=["uid"],
        )
        return [
            Hit(uid=str(hit["entity"]["uid"]), score=float(hit["distance"])) for hit in result[0]
        ]

    def count(self) -> int:
        return int(self._client.get_collection_stats(self.collection)["row_count"])
