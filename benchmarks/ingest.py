"""Ingest throughput on the embedded profile: events/s end to end, split into its parts.

    .venv/bin/python -m benchmarks.ingest [DATA_DIR] [--out benchmarks/results] [--keep DIR]

Ingests every shared export into fresh stores (SQLite + Milvus Lite + e5-small in-process),
then re-runs the same input to time the no-op path. Prints one JSON object and writes it
under benchmarks/results/. Parts: `parse_s` (read, normalise, geocode, merge), `embed_s`
(e5: passages and long-description chunks, `PULS_CHUNK_*` settings), `store_s` (staging
tables, Milvus upserts, event rows). `--keep DIR` keeps the stores (a PULS_DATA_DIR to run
`puls eval retrieval` on). The machine's load average (`uptime`) is recorded before and
after: other work on the same cores slows the embedding.
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
from retrieval.records import Chunking
from retrieval.settings import DEFAULT_COLLECTION, RetrievalSettings
from retrieval.vector_store import MilvusVectorStore

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "openagenda"
TARGET_EVENTS_PER_S = 20.0


def _run(
    files: list[Path], store_dir: Path, embedder: E5Embedder, chunking: Chunking
) -> tuple[IngestReport, float]:
    url = f"sqlite:///{store_dir / 'puls.db'}"
    store, staging = EventStore(url), StagingStore(url)
    vectors = MilvusVectorStore(
        str(store_dir / "milvus.db"), DEFAULT_COLLECTION, embedder.dim, chunking=chunking
    )
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


def _uptime() -> str:
    result = subprocess.run(["uptime"], capture_output=True, text=True)
    return result.stdout.strip()


def _tokens(store_dir: Path, embedder: E5Embedder, chunking: Chunking) -> int:
    """e5 tokens of every embedded text: what the embedding time is proportional to."""
    store = EventStore(f"sqlite:///{store_dir / 'puls.db'}")
    try:
        events = store.get(list(store.hashes())).values()
    finally:
        store.close()
    model = embedder._loaded()
    return sum(model.token_count(t) for e in events for t in e.chunk_texts(chunking))


def measure(data: Path, keep: Path | None = None) -> dict[str, Any]:
    files = sorted(p for p in data.iterdir() if p.suffix in {".json", ".csv"})
    chunking = RetrievalSettings().chunking()
    embedder = E5Embedder()
    embedder.embed_passages(["échauffement"])  # model load is not ingest time
    uptime_before = _uptime()
    with tempfile.TemporaryDirectory() as tmp:
        store_dir = keep or Path(tmp)
        store_dir.mkdir(parents=True, exist_ok=True)
        first, total_s = _run(files, store_dir, embedder, chunking)
        uptime_after = _uptime()
        again, rerun_s = _run(files, store_dir, embedder, chunking)
        tokens = _tokens(store_dir, embedder, chunking)
    indexed = first.inserted + first.updated
    return {
        "benchmark": "ingest",
        "at": datetime.now(UTC).isoformat(),
        "commit": _commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),  # other work skews the timing
            "uptime_before": uptime_before,
            "uptime_after_first_run": uptime_after,
        },
        "profile": "embedded (SQLite + Milvus Lite + e5-small, in-process)",
        "chunking": {
            "words": chunking.words,
            "overlap": chunking.overlap,
            "max_chunks": chunking.max_chunks,
            "dense_penalty": chunking.dense_penalty,
        },
        "rows_read": first.read,
        "events_indexed": indexed,
        "texts_embedded": first.chunks_embedded,
        "description_chunks": first.chunks_embedded - indexed,
        "tokens_embedded": tokens,
        "total_s": round(total_s, 2),
        "parse_s": round(first.parse_s, 2),
        "embed_s": round(first.embed_s, 2),
        "store_s": round(first.store_s, 2),
        "events_per_s": round(indexed / total_s, 1),
        "embed_events_per_s": round(indexed / first.embed_s, 1) if first.embed_s else None,
        "embed_texts_per_s": (
            round(first.chunks_embedded / first.embed_s, 1) if first.embed_s else None
        ),
        "embed_tokens_per_s": round(tokens / first.embed_s) if first.embed_s else None,
        "target_events_per_s": TARGET_EVENTS_PER_S,
        "rerun_s": round(rerun_s, 2),
        "rerun_writes": again.inserted + again.updated,
        "report": {k: v for k, v in first.as_dict().items() if k not in {"rejects", "errors"}},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--keep", type=Path, help="keep the stores in this (new) directory")
    args = parser.parse_args()
    result = measure(args.data, args.keep)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (args.out / f"ingest-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
