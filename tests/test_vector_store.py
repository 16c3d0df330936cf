"""Milvus Lite vector store: one entity per chunk, one hit per event, no stale chunks, a clear
error for a store with the old schema, and a closed store free for another process at once."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient

from retrieval.filters import CandidateFilter
from retrieval.records import Chunking, Event
from retrieval.vector_store import MilvusVectorStore, VectorStoreSchemaError
from tests.conftest import puls_env, run_puls

pytestmark = pytest.mark.integration


def test_closing_releases_the_data_dir_for_another_process(tmp_path: Path) -> None:
    """`puls demo` ingests in the CLI process, then a Ray replica opens the same store:
    Milvus Lite keeps its server (and the directory lock) until process exit unless
    `close()` releases it."""
    uri = str(tmp_path / "milvus.db")
    start = datetime(2025, 6, 21, 20, tzinfo=UTC)
    event = Event(uid="1", source="t", title="Concert", start=start, end=start + timedelta(hours=1))
    store = MilvusVectorStore(uri, "events", dim=4)
    store.upsert([event], np.ones((1, 4), dtype=np.float32))
    store.close()
    script = (
        "from retrieval.vector_store import MilvusVectorStore\n"
        f"print(MilvusVectorStore({uri!r}, 'events', dim=4).count())"
    )
    other = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert other.returncode == 0, other.stderr[-2000:]
    assert other.stdout.strip().splitlines()[-1] == "1"


START = datetime(2025, 6, 21, 20, tzinfo=UTC)
CHUNKING = Chunking(words=10, overlap=2, max_chunks=3, dense_penalty=0.0)


def make_event(uid: str, words: int, city: str = "Paris") -> Event:
    """An event whose long description has `words` words (w0 w1 ...)."""
    description = " ".join(f"w{i}" for i in range(words))
    end = START + timedelta(hours=1)
    return Event(uid=uid, source="t", title=f"Concert {uid}", start=START, end=end, city=city,
                 long_description=description)  # fmt: skip


def unit(*axes: float) -> np.ndarray:
    vector = np.asarray(axes, dtype=np.float32)
    return vector / np.linalg.norm(vector)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MilvusVectorStore]:
    opened = MilvusVectorStore(str(tmp_path / "milvus.db"), "events", dim=4, chunking=CHUNKING)
    yield opened
    opened.close()


def test_long_descriptions_become_overlapping_title_prefixed_chunks() -> None:
    texts = make_event("1", 25).chunk_texts(CHUNKING)
    assert len(texts) == 1 + 3 and texts[0] == make_event("1", 25).passage()
    assert texts[1] == "Concert 1. " + " ".join(f"w{i}" for i in range(10))
    assert texts[2].split()[2:4] == ["w8", "w9"]  # 2 words of overlap with chunk 1
    assert len(make_event("2", 200).chunk_texts(CHUNKING)) == 1 + CHUNKING.max_chunks  # capped
    assert make_event("3", 0).chunk_texts(CHUNKING) == [make_event("3", 0).passage()]
    same = Event(uid="4", source="t", title="Expo", start=START, end=START,
                 description="Une expo photo.", long_description="Une expo photo")  # fmt: skip
    assert same.description_chunks(CHUNKING) == []  # nothing the passage does not say


def test_one_entity_per_chunk_and_one_hit_per_event(store: MilvusVectorStore) -> None:
    a, b = make_event("a", 25), make_event("b", 0)
    # a: passage far from the query, its 3rd chunk right on it; b: passage fairly close
    chunks_a = np.stack([unit(1, 0, 0, 0), unit(1, 1, 0, 0), unit(0, 0, 1, 0.1), unit(1, 0, 1, 0)])
    store.upsert([a, b], [chunks_a, unit(0, 1, 1, 0)[None, :]])
    assert (store.count(), store.count_entities()) == (2, 5)
    query = unit(0, 0, 1, 0)

    hits = store.search(query, limit=10)
    assert [(h.uid, h.chunk) for h in hits] == [("a", 2), ("b", 0)]
    assert hits[0].score == pytest.approx(float(chunks_a[2] @ query), abs=1e-4)

    store.chunking = replace(CHUNKING, dense_penalty=0.5)  # description chunks discounted
    hits = store.search(query, limit=10)
    assert [h.uid for h in hits] == ["b", "a"]
    best_a = max(float(chunks_a[0] @ query), *(float(c @ query) - 0.5 for c in chunks_a[1:]))
    assert hits[1].score == pytest.approx(best_a, abs=1e-4)

    lexical = store.search_lexical("concert", limit=10)
    assert sorted(h.uid for h in lexical) == ["a", "b"] and {h.chunk for h in lexical} == {0}
    assert store.search(query, limit=10, where=CandidateFilter(0, cities=("lyon",))) == []


def test_an_event_that_shrinks_keeps_no_stale_chunk(store: MilvusVectorStore) -> None:
    store.upsert([make_event("a", 25)], [np.tile(unit(1, 0, 0, 0), (4, 1))])
    store.upsert([make_event("a", 5)], [np.tile(unit(0, 1, 0, 0), (2, 1))])
    assert (store.count(), store.count_entities()) == (1, 2)
    assert [(h.uid, h.chunk) for h in store.search(unit(1, 0, 0, 0), limit=5)] == [("a", 0)]
    assert store.hashes() == {"a": store.index_key(make_event("a", 5).content_hash())}
    store.delete(["a", "unknown"])
    assert (store.count(), store.count_entities(), store.hashes()) == (0, 0, {})


def test_index_key_changes_with_chunk_settings_not_with_the_dense_penalty() -> None:
    event = make_event("a", 25)
    key = f"{event.content_hash()}:{CHUNKING.key}"
    assert key.endswith(":w10o2c3")
    assert replace(CHUNKING, dense_penalty=0.3).key == CHUNKING.key
    assert replace(CHUNKING, max_chunks=1).key != CHUNKING.key


def create_old_schema_collection(uri: str, collection: str) -> None:
    """The one-entity-per-event collection that Puls built before chunking."""
    client = MilvusClient(uri)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("uid", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=4)
    index = client.prepare_index_params()
    index.add_index("vector", metric_type="COSINE", index_type="FLAT")
    client.create_collection(collection, schema=schema, index_params=index)
    client.insert(collection, [{"uid": "1", "vector": [1.0, 0.0, 0.0, 0.0]}])
    client.close()
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(uri)


def test_an_old_schema_store_is_a_one_line_error_or_is_rebuilt(tmp_path: Path) -> None:
    uri = str(tmp_path / "milvus.db")
    create_old_schema_collection(uri, "events")
    with pytest.raises(VectorStoreSchemaError, match="puls reindex") as raised:
        MilvusVectorStore(uri, "events", dim=4)
    assert "\n" not in str(raised.value)
    rebuilt = MilvusVectorStore(uri, "events", dim=4, migrate=True)
    try:
        assert rebuilt.migrated and rebuilt.count() == 0
        rebuilt.upsert([make_event("1", 0)], unit(1, 0, 0, 0)[None, :])
        assert rebuilt.count() == 1
    finally:
        rebuilt.close()
    again = MilvusVectorStore(uri, "events", dim=4)
    assert not again.migrated and again.count() == 1
    again.close()


@pytest.mark.parametrize(
    "command", [("search", "jazz"), ("check",), ("serve", "--no-ray"), ("serve",)]
)
def test_cli_on_an_old_schema_store_says_what_to_do(tmp_path: Path, command: tuple) -> None:
    """`serve` checks before it starts its workers (on Ray, one traceback per replica)."""
    data_dir = tmp_path / "store"
    data_dir.mkdir()
    create_old_schema_collection(str(data_dir / "milvus.db"), "puls_events")
    result = run_puls(*command, env=puls_env(data_dir), check=False, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("puls: error:") and len(result.stderr.splitlines()) == 1
    assert "puls reindex" in result.stderr and "Traceback" not in result.stderr
