"""Answer-cache replay: paraphrased repeats of questions, hit rate and hit vs miss latency.

    python -m benchmarks.cache_replay --data-dir .puls [--redis redis://127.0.0.1:6379/0] [--verify]

Each group is one question then its paraphrases, asked in order to the real app in-process
(e5, Milvus Lite, llama.cpp; the cache in Redis under a fresh key prefix, removed after).
The first of a group is a miss; a paraphrase hits when its slots match and its theme words
or its embedding are close enough. Latencies are measured in the same run. Every hit is
checked against the same question answered by a second app with the cache off: the cited
events must be the same (a hit must never change what a miss would have cited). `--verify`
runs the cache with `cache_verify` (the app's default; without the flag it is off here): a
hit for another dense text than the stored one searches and must cite what that search found.
Results: JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from fastapi.testclient import TestClient

from ingest.settings import IngestSettings
from puls.settings import Settings
from retrieval.settings import RetrievalSettings
from serving.app import create_app
from serving.settings import ServingSettings

RESULTS = Path(__file__).resolve().parent / "results"
NOW = "2025-06-01T10:00:00+02:00"
GROUPS = [
    ["Un concert de jazz à Paris en juin 2025 ?", "Des concerts de jazz à Paris en juin 2025",
     "concert jazz Paris juin 2025", "Y a-t-il du jazz en concert à Paris en juin 2025 ?"],
    ["Des expositions à Paris en juin 2025", "Une exposition à Paris en juin 2025 ?",
     "Quelles expos voir à Paris en juin 2025 ?"],
    ["Du théâtre à Paris en juin 2025", "Des pièces de théâtre à Paris en juin 2025 ?",
     "théâtre Paris juin 2025"],
    ["Ateliers pour enfants à Paris en juin 2025",
     "Un atelier pour les enfants à Paris en juin 2025",
     "Quels ateliers enfants à Paris en juin 2025 ?"],
    ["Des visites guidées à Paris en juin 2025", "Une visite guidée à Paris en juin 2025 ?",
     "Visites commentées à Paris en juin 2025"],
]  # fmt: skip


def _app(data_dir: Path, **serving: Any) -> TestClient:
    settings = Settings(
        retrieval=RetrievalSettings(data_dir=data_dir),
        ingest=IngestSettings(),
        serving=ServingSettings(**serving),
    )
    return TestClient(create_app(settings))


def _ready(client: TestClient) -> None:
    deadline = time.monotonic() + 300
    while client.get("/readyz").status_code != 200:
        if time.monotonic() > deadline:
            raise TimeoutError("app not ready")
        time.sleep(0.2)


def _ask(client: TestClient, question: str) -> tuple[float, str, list[str]]:
    body = {"model": "puls", "messages": [{"role": "user", "content": question}],
            "puls": {"now": NOW}}  # fmt: skip
    started = time.perf_counter()
    response = client.post("/v1/chat/completions", json=body)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    while client.app.state.chat.pending_cache_writes:  # type: ignore[attr-defined]
        time.sleep(0.01)
    uids = [c["uid"] for c in response.json()["citations"]]
    return elapsed, response.headers.get("x-puls-cache", "none"), uids


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def replay(data_dir: Path, redis_url: str, verify: bool = False) -> dict[str, Any]:
    prefix = f"puls-bench:{uuid.uuid4().hex}"
    rows = []
    try:
        with _app(
            data_dir, memory_redis_url=redis_url, memory_key_prefix=prefix, cache_enabled=True,
            cache_verify=verify,
        ) as cached:  # fmt: skip
            _ready(cached)
            for group in GROUPS:
                for question in group:
                    ms, result, uids = _ask(cached, question)
                    rows.append({"question": question, "ms": round(ms, 2), "cache": result,
                                 "uids": uids})  # fmt: skip
        with _app(data_dir, cache_enabled=False) as fresh:
            _ready(fresh)
            for row in rows:
                if row["cache"] == "hit":
                    row["same_as_miss"] = _ask(fresh, row["question"])[2] == row["uids"]
    finally:
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
    return {**_summary(rows), "cache_verify": verify}


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    hits = [r["ms"] for r in rows if r["cache"] == "hit"]
    misses = [r["ms"] for r in rows if r["cache"] == "miss"]
    repeats = sum(len(g) - 1 for g in GROUPS)
    return {
        "benchmark": "cache_replay",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "requests": len(rows),
        "repeats": repeats,
        "hits": len(hits),
        "hit_rate_on_repeats": round(len(hits) / repeats, 3),
        "hit_ms": {"p50": _pct(hits, 0.5), "p95": _pct(hits, 0.95),
                   "mean": round(statistics.mean(hits), 2) if hits else None},
        "miss_ms": {"p50": _pct(misses, 0.5), "p95": _pct(misses, 0.95)},
        "target_hit_p50_ms": 10,
        "hits_citing_what_a_miss_cites": sum(1 for r in rows if r.get("same_as_miss")),
        "rows": [{k: v for k, v in r.items() if k != "uids"} for r in rows],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(".puls"))
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--verify", action="store_true", help="PULS_CACHE_VERIFY: hits must cite a fresh search"
    )
    args = parser.parse_args()
    summary = replay(args.data_dir, args.redis, args.verify)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"cache-replay-{stamp}.json"
    path.write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, ensure_ascii=False))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
