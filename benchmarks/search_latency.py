"""Search latency (p50/p95, rerank included) at the real corpus size and at 100k events.

    python benchmarks/search_latency.py --store .puls [--sizes 100000] [--repeat 3]
        [--queries ../shared/eval/retrieval-dev.jsonl] [--search-index memory,milvus]
        [--query-cache]

The large corpus replicates the real events with jittered dates (±180 days) and
coordinates (±0.05°), copying their vectors instead of re-embedding them (identical text
has an identical vector; embedding 100k passages would take over an hour here). With
`--query-cache` the retriever keeps its query-vector LRU, as `puls serve` does, so the warm-up
pass fills it and every measured search reuses its vector: the search's own time, the part of
a repeated question's TTFT that retrieval adds (benchmarks/overhead.py). Both
corpora are searched in the same run with the same queries, by each candidate index in turn
(the in-memory copy, Milvus Lite itself), so their ratios are meaningful on a noisy machine.
Results: JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.load.metrics import nearest_rank
from retrieval import RetrievalSettings, Retriever, close_retriever, open_retriever
from retrieval.records import Event
from serving.app import freeze_startup_objects

RESULTS = Path(__file__).resolve().parent / "results"
Query = tuple[str, str, tuple[float, float] | None]
QUERIES: list[Query] = [
    ("Un concert de jazz à Paris en juin 2025 ?", "2025-06-01T10:00:00+02:00", None),
    ("Que faire ce soir près de moi ?", "2025-06-21T15:00:00+02:00", (48.86, 2.35)),
    ("Des expositions à Reims ce week-end", "2026-09-01T09:00:00+02:00", None),
    ("Ateliers pour enfants dans la Drôme", "2025-03-01T09:00:00+01:00", None),
    ("Visites guidées d'églises à Strasbourg en septembre 2026", "2026-09-01T09:00:00+02:00", None),
    ("Conférences sur l'astronomie", "2025-03-01T09:00:00+01:00", None),
    ("Balades nature près de Die", "2025-03-01T09:00:00+01:00", (44.7536, 5.37)),
    ("Concerts d'orgue dans le Grand Est", "2026-06-01T09:00:00+02:00", None),
]


def _summary(timings: list[float]) -> dict[str, float]:
    return {
        "n": len(timings),
        "p50_ms": round(statistics.median(timings), 1),
        "p95_ms": round(nearest_rank(timings, 0.95), 1),
        "mean_ms": round(statistics.fmean(timings), 1),
    }


def load_queries(path: Path | None) -> list[Query]:
    """The eval file's queries (text, now, location), or the eight built-in ones."""
    if path is None:
        return QUERIES
    queries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            loc = row.get("location")
            queries.append((row["query"], row["now"], (loc["lat"], loc["lon"]) if loc else None))
    return queries


def measure(retriever: Retriever, queries: list[Query], repeat: int) -> dict[str, Any]:
    """Wall time of `Retriever.search` (parse, embed, dense + BM25 candidates, SQL fetch, rerank),
    every query embedded afresh unless the retriever keeps its query-vector cache
    (`--query-cache`), and the e5 query embedding alone: what a repeated question saves with
    the cache on. Once warm,
    the heap is frozen as the server freezes it (a full GC pass over it took ~90 ms)."""
    started = time.perf_counter()
    retriever.index()  # loads the in-memory copy (PULS_SEARCH_INDEX), as serving's warm-up does
    index_load_s = time.perf_counter() - started
    for text, now, location in queries:  # warm caches and the query embedder
        retriever.search(text, datetime.fromisoformat(now), location)
    freeze_startup_objects()  # as `puls serve` does once warm (serving/app.py)
    timings, embed = [], []
    for _ in range(repeat):
        for text, now, location in queries:
            asked = datetime.fromisoformat(now)
            started = time.perf_counter()
            retriever.search(text, asked, location)
            timings.append((time.perf_counter() - started) * 1000)
            embedded = retriever.dense_text(retriever.parse(text, asked, location))
            started = time.perf_counter()
            retriever.embedder.embed_queries([embedded])
            embed.append((time.perf_counter() - started) * 1000)
    gc.unfreeze()  # the next store's retriever replaces this one
    return {**_summary(timings), "embed": _summary(embed), "index_load_s": round(index_load_s, 2)}


def replicate(source: Retriever, target: Retriever, size: int, seed: int = 7) -> None:
    """Fill `target` with `size` jittered copies of `source`'s events and vectors."""
    rng = random.Random(seed)
    uids = list(source.events.hashes())
    events = source.events.get(uids)
    vectors = source.vectors.vectors(uids)
    batch: list[Event] = []
    batch_vectors = []
    for i in range(size):
        uid = uids[i % len(uids)]
        shift = timedelta(days=rng.uniform(-180, 180)) if i >= len(uids) else timedelta()
        original = events[uid]
        copy = replace(
            original,
            uid=f"{uid}-{i}" if i >= len(uids) else uid,
            start=original.start + shift,
            end=original.end + shift,
            lat=None if original.lat is None else original.lat + rng.uniform(-0.05, 0.05),
            lon=None if original.lon is None else original.lon + rng.uniform(-0.05, 0.05),
        )
        batch.append(copy)
        batch_vectors.append(vectors[uid])
        if len(batch) == 1000 or i == size - 1:
            target.vectors.upsert(batch, np.asarray(batch_vectors, dtype=np.float32))
            target.events.upsert(batch)
            batch, batch_vectors = [], []


def _settings(
    directory: Path, search_index: str = "milvus", query_cache: bool = False
) -> RetrievalSettings:
    """The query-vector LRU off (every query embedded) unless `query_cache`: then its default
    size, as `puls serve` runs."""
    cache = {} if query_cache else {"query_vector_cache": 0}
    return RetrievalSettings(data_dir=directory, search_index=search_index, **cache)


def measure_store(
    directory: Path,
    indexes: list[str],
    queries: list[Query],
    repeat: int,
    query_cache: bool = False,
) -> dict[str, Any]:
    """Each search index in turn over the same store (one retriever open at a time: a
    Milvus Lite directory takes one client)."""
    results: dict[str, Any] = {}
    for search_index in indexes:
        retriever = open_retriever(_settings(directory, search_index, query_cache))
        try:
            results["events"] = retriever.vectors.count()
            results[search_index] = measure(retriever, queries, repeat)
        finally:
            close_retriever(retriever)
    return results


def build_replica(store: Path, directory: Path, size: int) -> float | None:
    """Replicate the store's events to `size` in `directory`, unless a kept store already
    holds them; the build time in seconds, or None."""
    big = open_retriever(_settings(directory))
    if big.vectors.count() >= size:
        close_retriever(big)
        return None
    started = time.perf_counter()
    real = open_retriever(_settings(store))
    try:
        replicate(real, big, size)
    finally:
        close_retriever(real)
        # closing seals Milvus Lite's growing segments, as after `puls ingest`: searched
        # unsealed, 100k rows took 13 s p50 instead of 0.6 s.
        close_retriever(big)
    return round(time.perf_counter() - started, 1)


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        return out.stdout.strip()
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True, help="PULS_DATA_DIR of an ingest")
    parser.add_argument("--sizes", default="100000", help="replicated corpus sizes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--queries", type=Path, help="a JSONL eval file (query, now, location); default: 8 built in"
    )
    parser.add_argument(
        "--keep", type=Path, help="keep the replicated stores under this dir (and reuse them)"
    )
    parser.add_argument(
        "--search-index",
        default="memory,milvus",
        help="candidate indexes to compare, each over the same store (PULS_SEARCH_INDEX)",
    )
    parser.add_argument(
        "--query-cache",
        action="store_true",
        help="keep the query-vector LRU, as `puls serve` does: searches reuse their vectors",
    )
    parser.add_argument(
        "--out", type=Path, help="the JSON result (default: results/search-latency-<utc>.json)"
    )
    args = parser.parse_args()
    queries = load_queries(args.queries)

    indexes = [i for i in args.search_index.split(",") if i]
    report: dict[str, Any] = {
        "benchmark": "search_latency",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "queries": len(queries),
        "dense_query": _settings(args.store).dense_query,
        "query_cache": args.query_cache,
        "results": {
            "real": measure_store(args.store, indexes, queries, args.repeat, args.query_cache)
        },
    }
    for size in (int(s) for s in args.sizes.split(",") if s):
        with tempfile.TemporaryDirectory() as tmp:
            directory = args.keep / str(size) if args.keep else Path(tmp)
            build_s = build_replica(args.store, directory, size)
            measured = measure_store(directory, indexes, queries, args.repeat, args.query_cache)
            report["results"][str(size)] = {**measured, "build_s": build_s}
    out = args.out or RESULTS / f"search-latency-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
