"""Ingest with its staging tables on real stores: SQLite and PostgreSQL/PostGIS, Milvus Lite, e5.

Guarantees under test: a re-run writes nothing; rejects are kept with their reason; personal
data never reaches a table; a run killed with SIGKILL and re-run ends in the same state as an
uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ingest.pipeline import ingest_paths
from ingest.staging import StagingStore
from retrieval.embedder import E5Embedder
from retrieval.event_store import EventStore
from retrieval.vector_store import MilvusVectorStore
from tests.conftest import DATA, PULS, REPO, puls_env, run_puls

pytestmark = pytest.mark.integration
EMAIL = "marie.dupont@exemple.fr"


@pytest.fixture(scope="module")
def embedder() -> E5Embedder:
    return E5Embedder()


def export_slice(target: Path, n: int = 40) -> Path:
    """Real ODS rows, one with personal data filled in, one without a title."""
    records = json.loads((DATA / "paris-2025-ods.json").read_text("utf-8"))["results"][:n]
    records[0] = {**records[0], "contributor_email": EMAIL, "contributor_contactname": "Marie"}
    records[1] = {**records[1], "title_fr": ""}
    target.write_text(json.dumps({"results": records}, ensure_ascii=False), "utf-8")
    return target


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_staging_is_filled_once_and_a_rerun_writes_nothing(
    backend: str, tmp_path: Path, embedder: E5Embedder, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'puls.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    files = [export_slice(tmp_path / "paris.json")]
    store, staging = EventStore(url), StagingStore(url)
    vectors = MilvusVectorStore(str(tmp_path / "milvus.db"), "events", embedder.dim)
    try:
        first = ingest_paths(files, embedder, vectors, store, progress=False, staging=staging)
        counts = staging.counts()
        again = ingest_paths(files, embedder, vectors, store, progress=False, staging=staging)
        assert staging.counts() == counts
    finally:
        vectors.close()
        store.close()
        staging.close()
    assert first.inserted == 39 and first.rejected == 1 and first.raw_appended == 40
    assert (again.inserted, again.updated, again.raw_appended) == (0, 0, 0)
    assert counts["raw"] == 40 and counts["rejects"] == 1 and counts["events"] == 39
    assert counts["occurrences"] >= 39 and 0 < counts["venues"] <= 39
    engine = create_engine(url)
    with engine.connect() as conn:
        if backend == "sqlite":
            conn.execute(text(f"ATTACH DATABASE '{tmp_path / 'puls-raw.db'}' AS raw"))
            conn.execute(text(f"ATTACH DATABASE '{tmp_path / 'puls-stg.db'}' AS stg"))
        payloads = " ".join(str(p) for p in conn.scalars(text("SELECT payload FROM raw.records")))
        reject = conn.execute(text("SELECT rule, row_number FROM stg.rejects")).one()
        if backend == "postgresql":
            placed = conn.scalar(text("SELECT count(*) FROM stg.venues WHERE geog IS NOT NULL"))
            near = conn.scalar(
                text("SELECT count(*) FROM stg.events WHERE ST_DWithin(geog, "
                     "ST_MakePoint(2.3522, 48.8566)::geography, 30000)")
            )  # fmt: skip
            assert placed > 0 and near > 0
    engine.dispose()
    assert EMAIL not in payloads and "contributor_" not in payloads
    assert tuple(reject) == ("no_title", 2)


def sqlite_state(data_dir: Path) -> tuple[list[tuple], list[tuple]]:
    with sqlite3.connect(data_dir / "puls.db") as conn:
        events = conn.execute("SELECT uid, content_hash FROM events ORDER BY uid").fetchall()
        conn.execute(f"ATTACH DATABASE '{data_dir / 'puls-stg.db'}' AS stg")
        staged = conn.execute(
            "SELECT uid, status, duplicate_of, content_hash FROM stg.events ORDER BY uid"
        ).fetchall()
    return events, staged


def milvus_count(data_dir: Path) -> int:
    vectors = MilvusVectorStore(str(data_dir / "milvus.db"), "puls_events", 384)
    try:
        return vectors.count()
    finally:
        vectors.close()


def stored_events(data_dir: Path) -> int:
    try:
        with sqlite3.connect(data_dir / "puls.db") as conn:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # the table does not exist yet


@pytest.mark.slow
def test_sigkill_midway_then_rerun_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    source = export_slice(tmp_path / "paris.json", n=160)
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    env = puls_env(killed_dir, PULS_INGEST_BATCH_SIZE="8")
    process = subprocess.Popen(
        [*PULS, "ingest", str(source), "--json"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while stored_events(killed_dir) < 16 and process.poll() is None:
        assert time.monotonic() < deadline, "ingest made no progress"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the whole group: Milvus Lite's server too
    process.wait(timeout=30)
    interrupted_at = stored_events(killed_dir)
    assert 0 < interrupted_at < 159, "the kill did not land midway"

    resumed = json.loads(run_puls("ingest", str(source), "--json", env=env).stdout)
    clean = json.loads(run_puls("ingest", str(source), "--json", env=puls_env(clean_dir)).stdout)
    assert resumed["unchanged"] >= interrupted_at
    every = ("inserted", "updated", "unchanged", "rejected", "merged", "near_duplicates")
    assert sum(clean[k] for k in every) == clean["read"] == 160
    assert sqlite_state(killed_dir) == sqlite_state(clean_dir)
    assert milvus_count(killed_dir) == milvus_count(clean_dir) == stored_events(clean_dir)
