"""Ingest into real stores (e5, Milvus Lite, SQLite): counts, idempotence, merging, bad files,
chunks, self-healing vectors, near-duplicates across runs, migrating an old vector store."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
from pymilvus import MilvusClient
from sqlalchemy import select

from ingest.pipeline import ingest_paths
from ingest.staging import StagingStore
from ingest.staging import events as stg_events
from retrieval import RetrievalSettings, Retriever, close_retriever, open_retriever
from tests.conftest import DATA, puls_env, run_puls
from tests.test_vector_store import create_old_schema_collection

pytestmark = pytest.mark.integration


@pytest.fixture
def retriever(tmp_path: Path) -> Iterator[Retriever]:
    opened = open_retriever(RetrievalSettings(data_dir=tmp_path / "store"))
    yield opened
    close_retriever(opened)


def ods_slice(path: Path, records: list[dict]) -> Path:
    path.write_text(json.dumps({"results": records}, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def records() -> list[dict]:
    return json.loads((DATA / "paris-2025-ods.json").read_text("utf-8"))["results"][:30]


def ingest(retriever: Retriever, *paths: Path):  # type: ignore[no-untyped-def]
    return ingest_paths(
        list(paths), retriever.embedder, retriever.vectors, retriever.events, progress=False
    )


def test_reingest_changes_nothing_and_an_edit_updates_one(
    retriever: Retriever, records: list[dict], tmp_path: Path
) -> None:
    path = ods_slice(tmp_path / "a.json", records)
    first = ingest(retriever, path)
    valid = first.read - first.rejected
    assert first.inserted == valid and first.updated == 0
    assert retriever.events.count() == valid == retriever.vectors.count()

    again = ingest(retriever, path)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, valid)

    records[3] = {**records[3], "title_fr": records[3]["title_fr"] + " (complet)"}
    edited = ingest(retriever, ods_slice(path, records))
    assert (edited.inserted, edited.updated, edited.unchanged) == (0, 1, valid - 1)
    assert retriever.events.get([records[3]["uid"]])[records[3]["uid"]].title.endswith("(complet)")


def test_same_uid_in_two_sources_is_one_event_newest_wins(
    retriever: Retriever, records: list[dict], tmp_path: Path
) -> None:
    older = {**records[0], "title_fr": "Ancien titre", "updatedat": "2020-01-01T00:00:00+00:00"}
    newer = {**records[0], "title_fr": "Nouveau titre", "updatedat": "2025-01-01T00:00:00+00:00"}
    report = ingest(
        retriever,
        ods_slice(tmp_path / "new.json", [newer]),
        ods_slice(tmp_path / "old.json", [older]),
    )
    assert (report.read, report.inserted, report.merged) == (2, 1, 1)
    assert retriever.events.get([records[0]["uid"]])[records[0]["uid"]].title == "Nouveau titre"


def test_a_bad_file_is_named_and_the_rest_still_ingests(
    retriever: Retriever, records: list[dict], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("[{", encoding="utf-8")
    report = ingest(retriever, broken, ods_slice(tmp_path / "good.json", records[:5]))
    assert len(report.errors) == 1 and "broken.json" in report.errors[0]
    assert report.inserted == 5


def test_cli_json_report_and_one_line_errors(tmp_path: Path, records: list[dict]) -> None:
    env = puls_env(tmp_path / "cli-store")
    good = ods_slice(tmp_path / "good.json", records[:4])
    result = run_puls(
        "ingest", str(good), str(tmp_path / "missing.csv"), "--json", env=env, check=False
    )
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert {"read", "inserted", "updated", "unchanged", "rejected"} <= set(report)
    assert report["inserted"] == 4
    assert result.stderr.strip().splitlines() == [
        f"puls: error: {tmp_path / 'missing.csv'}: no such file"
    ]

    search = run_puls(
        "search", "planétarium", "--now", "2025-01-01T10:00:00+01:00", "--json", env=env
    )
    found = json.loads(search.stdout)
    assert found["parse"]["terms"] == ["planetarium"]
    assert found["results"], "the ingested planetarium show was not found"

    bad_now = run_puls("search", "jazz", "--now", "demain", env=env, check=False)
    assert bad_now.returncode == 2 and "--now" in bad_now.stderr


def test_long_descriptions_are_chunked_and_new_chunk_settings_reembed_once(
    retriever: Retriever, records: list[dict], tmp_path: Path
) -> None:
    path = ods_slice(tmp_path / "a.json", records[:12])
    first = ingest(retriever, path)
    vectors = retriever.vectors
    events = retriever.events.get(list(retriever.events.hashes()))
    expected = sum(len(vectors.chunk_texts(e)) for e in events.values())
    assert vectors.count() == len(events) == first.inserted
    assert vectors.count_entities() == expected == first.chunks_embedded > len(events)

    vectors.chunking = replace(vectors.chunking, max_chunks=0)  # e.g. PULS_CHUNK_MAX=0
    rechunked = ingest(retriever, path)
    assert (rechunked.inserted, rechunked.updated) == (0, 0)
    assert rechunked.reindexed == rechunked.unchanged == len(events)
    assert vectors.count_entities() == vectors.count() == len(events)
    assert ingest(retriever, path).reindexed == 0


def test_a_lost_vector_store_heals_from_the_event_store(
    retriever: Retriever, records: list[dict], tmp_path: Path
) -> None:
    ingest(retriever, ods_slice(tmp_path / "a.json", records[:6]))
    lost = sorted(retriever.events.hashes())[:2]
    retriever.vectors.delete(lost)
    other = ingest(retriever, ods_slice(tmp_path / "b.json", records[6:8]))
    assert other.inserted == 2 and other.reindexed == 2  # stored events, not in this run
    assert retriever.vectors.count() == retriever.events.count() == 8
    assert set(lost) <= set(retriever.vectors.hashes())


def test_an_indexed_event_that_becomes_a_near_duplicate_leaves_the_index(
    retriever: Retriever, records: list[dict], tmp_path: Path
) -> None:
    url = RetrievalSettings(data_dir=tmp_path / "store").resolved_database_url()
    staging = StagingStore(url)
    run = partial(ingest_paths, embedder=retriever.embedder, vectors=retriever.vectors,
                  store=retriever.events, progress=False, staging=staging)  # fmt: skip
    base, other = records[0], records[1]
    first = run([ods_slice(tmp_path / "a.json", [base, other])])
    assert first.inserted == 2

    # another source, a later run: the same event under a smaller uid
    twin = {**base, "uid": "00000001", "title_fr": base["title_fr"].upper()}
    second = run([ods_slice(tmp_path / "b.json", [twin])])
    assert (second.inserted, second.duplicates_removed) == (1, 1)
    assert set(retriever.events.hashes()) == set(retriever.vectors.hashes()) == {
        "00000001", other["uid"]}  # fmt: skip
    assert staged_duplicate_of(staging, base["uid"]) == "00000001"

    # its own source again: still linked, never indexed twice
    third = run([ods_slice(tmp_path / "a.json", [base, other])])
    assert (third.near_duplicates, third.inserted, third.duplicates_removed) == (1, 0, 0)
    assert retriever.vectors.count() == retriever.events.count() == 2

    # an update that turns an indexed event into a near-duplicate (same uid, newer record)
    same_place_and_time = ("title_fr", "location_name", "location_address", "location_city",
                           "firstdate_begin", "lastdate_end")  # fmt: skip
    moved = {**other, **{k: base[k] for k in same_place_and_time},
             "updatedat": "2030-01-01T00:00:00+00:00"}  # fmt: skip
    fourth = run([ods_slice(tmp_path / "c.json", [moved])])
    assert fourth.near_duplicates == 1 and fourth.duplicates_removed == 1
    assert set(retriever.events.hashes()) == set(retriever.vectors.hashes()) == {"00000001"}
    staging.close()


def staged_duplicate_of(staging: StagingStore, uid: str) -> str | None:
    with staging.engine.connect() as conn:
        return conn.scalar(select(stg_events.c.duplicate_of).where(stg_events.c.uid == uid))


def test_cli_reindex_migrates_an_old_schema_store(tmp_path: Path, records: list[dict]) -> None:
    data_dir = tmp_path / "store"
    env = puls_env(data_dir)
    run_puls("ingest", str(ods_slice(tmp_path / "a.json", records[:3])), "--json", env=env)
    client = MilvusClient(str(data_dir / "milvus.db"))
    client.drop_collection("puls_events")
    client.close()
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(str(data_dir / "milvus.db"))
    create_old_schema_collection(str(data_dir / "milvus.db"), "puls_events")
    refused = run_puls("search", "concert", env=env, check=False)
    assert refused.returncode == 1 and "puls reindex" in refused.stderr

    report = json.loads(run_puls("reindex", "--json", env=env).stdout)
    assert report["vector_store_migrated"] and report["reindexed"] == 3
    assert (report["inserted"], report["updated"]) == (0, 0)
    assert run_puls("search", "concert", "--json", env=env).returncode == 0
    assert json.loads(run_puls("reindex", "--json", env=env).stdout)["reindexed"] == 0


@pytest.mark.parametrize(("variable", "threads"), [(None, os.cpu_count()), ("1", 1)])
def test_an_ingest_embeds_on_every_core_unless_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str | None, threads: int
) -> None:
    """Serving keeps e5 on one thread (beside the LLM); a batch ingest has the cores."""
    from puls.cli import _ingest_stores
    from puls.settings import load_settings

    monkeypatch.setenv("PULS_DATA_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("PULS_EMBEDDER_THREADS", "1")
    if variable is not None:
        monkeypatch.setenv("PULS_INGEST_EMBEDDER_THREADS", variable)
    with _ingest_stores(load_settings()) as (retriever, _staging):
        assert retriever.embedder.num_threads == threads  # type: ignore[attr-defined]
