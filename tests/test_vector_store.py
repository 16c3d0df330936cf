"""Milvus Lite store lifecycle: a closed store is free for another process at once."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from retrieval.records import Event
from retrieval.vector_store import MilvusVectorStore

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
