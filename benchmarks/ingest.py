"""Ingest throughput on the embedded profile: events/s end to end, split into its parts.

    .venv/bin/python -m benchmarks.ingest [DATA_DIR] [--out benchmarks/results]

Ingests every shared export into fresh stores (SQLite + Milvus Lite + e5-small in-process),
then re-runs the same input to time the no-op path. Prints one JSON object and writes it
under benchmarks/results/. Parts: `parse_s` (read, normalise, geocode, merge), `embed_s`
(e5 passages), `store_s` (staging tables, Milvus upserts, event rows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest.pipeline import IngestReport, ingest_paths
from ingest.staging import StagingStore
from retrieval.embedder import E5Embedder
from retrieval.event_store import EventStore
from retrieval.vector_store import MilvusVectorStore

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "openagenda"
TARGET_EVENTS_PER_S = 20.0


def _run(files: list[Path], store_dir: Path, embedder: E5Embedder) -> tuple[IngestReport, float]:
    url = f"sqlite:///{store_dir / 'puls.db'}"
    store, staging = EventStore(url), StagingStore(url)
    vectors = MilvusVectorStore(str(store_dir / "milvus.db"), "bench", embedder.dim)
    try:
        started = time.perf_counter()
        report = ingest_paths(files, embedder, vectors, store, progress=False, staging=staging)
        return report, time.perf_counter() - started
    finally:
        vectors.close()
        store.close()
        staging.close()


def _commit() -> str:
    result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return result.stdout.strip()


def measure(data: Path) -> dict[str, Any]:
    files = sorted(p for p in data.iterdir() if p.suffix in {".json", ".csv"})
    embedder = E5Embedder()
    embedder.embed_passages(["échauffement"])  # model load is not ingest time
    with tempfile.TemporaryDirectory() as tmp:
        first, total_s = _run(files, Path(tmp), embedder)
        again, rerun_s = _run(files, Path(tmp), embedder)
    indexed = first.inserted + first.updated
    return {
        "benchmark": "ingest",
        "at": datetime.now(UTC).isoformat(),
        "commit": _commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),  # other work skews the timing
        },
        "profile": "embedded (SQLite + Milvus Lite + e5-small, in-process)",
        "rows_read": first.read,
        "events_indexed": indexed,
        "total_s": round(total_s, 2),
        "parse_s": round(first.parse_s, 2),
        "embed_s": round(first.embed_s, 2),
        "store_s": round(first.store_s, 2),
        "events_per_s": round(indexed / total_s, 1),
        "embed_events_per_s": round(indexed / first.embed_s, 1) if first.embed_s else None,
        "target_events_per_s": TARGET_EVENTS_PER_S,
        "rerun_s": round(rerun_s, 2),
        "rerun_writes": again.inserted + again.updated,
        "report": {k: v for k, v in first.as_dict().items() if k not in {"rejects", "errors"}},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    result = measure(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (args.out / f"ingest-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
