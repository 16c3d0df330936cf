"""Load shapes and the sweep: fixed concurrency, optional Poisson arrivals, warm-up, and the
same schedule against a baseline endpoint, alternating.

Each level sends `requests` requests (or as many as fit in `duration_s`), at most `concurrency`
in flight; with `rate`, arrivals follow a Poisson process (exponential gaps, seeded), as vLLM's
`--request-rate` with `--max-concurrency`. Target and baseline never run at the same time (they
would share the CPU): at each level both run the same schedule one after the other, in ABBA
order (target first on even levels, baseline first on odd ones) so drift does not favour one.

Example:
    config = LoadConfig(target=Endpoint("puls", chat_url("http://127.0.0.1:8080"), "puls"),
                        prompts=load_prompts(DEFAULT_PROMPTS), concurrency=(1, 2, 4), requests=8)
    result = asyncio.run(run_sweep(config))
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from benchmarks.load.metrics import CONVENTIONS, RequestRecord, summarise
from benchmarks.load.prompts import Endpoint, Prompt, chat_body
from benchmarks.load.stream import READ_TIMEOUT_S, client_timeout, timed_request

DEFAULT_REQUESTS = 16
RATIO_KEYS = (
    ("ttft_ms", "p50"),
    ("tpot_ms", "p50"),
    ("itl_ms", "p50"),
    ("e2el_ms", "p50"),
    ("request_throughput", None),
    ("output_throughput", None),
)


@dataclass(frozen=True)
class LoadConfig:
    """Everything one run needs; `run_settings()` is what the run JSON records."""

    target: Endpoint
    prompts: list[Prompt]
    baseline: Endpoint | None = None
    concurrency: tuple[int, ...] = (1, 2, 4)
    requests: int | None = DEFAULT_REQUESTS
    duration_s: float | None = None
    rate: float | None = None
    warmup: int = 1
    max_tokens: int = 60
    seed: int = 0
    slo_ms: dict[str, float] = field(default_factory=dict)
    read_timeout_s: float = READ_TIMEOUT_S
    prompts_file: str = ""

    def run_settings(self) -> dict[str, Any]:
        return {
            "url": self.target.url,
            "model": self.target.model,
            "baseline": self.baseline.url if self.baseline else None,
            "baseline_model": self.baseline.model if self.baseline else None,
            "concurrency": list(self.concurrency),
            "requests_per_level": self.requests,
            "duration_s": self.duration_s,
            "rate": self.rate,
            "arrivals": "poisson" if self.rate else "all at once, bounded by concurrency",
            "warmup": self.warmup,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "slo_ms": self.slo_ms,
            "prompts_file": self.prompts_file,
            "prompts": len(self.prompts),
            "read_timeout_s": self.read_timeout_s,
        }


def arrival_offsets(rate: float | None, rng: random.Random) -> Iterator[float]:
    """Seconds after the level starts at which each request arrives: all at 0 without a rate."""
    offset = 0.0
    while True:
        yield offset
        if rate is not None:
            offset += rng.expovariate(rate)


async def run_level(
    client: httpx.AsyncClient, endpoint: Endpoint, config: LoadConfig, concurrency: int
) -> tuple[list[RequestRecord], float]:
    """One level's records and its duration (first send to last completion)."""
    gate = asyncio.Semaphore(concurrency)
    tasks: list[asyncio.Task[RequestRecord]] = []
    start = time.perf_counter()
    deadline = None if config.duration_s is None else start + config.duration_s
    for index, offset in enumerate(arrival_offsets(config.rate, random.Random(config.seed))):
        if config.requests is not None and index >= config.requests:
            break
        if deadline is not None and start + offset >= deadline:
            break
        await asyncio.sleep(max(0.0, start + offset - time.perf_counter()))
        await gate.acquire()
        if deadline is not None and time.perf_counter() >= deadline:
            gate.release()
            break
        prompt = config.prompts[index % len(config.prompts)]
        body = chat_body(prompt, endpoint, config.max_tokens)
        tasks.append(asyncio.create_task(_gated(gate, client, endpoint.url, body, index, prompt)))
    records = list(await asyncio.gather(*tasks))
    return records, time.perf_counter() - start


async def _gated(
    gate: asyncio.Semaphore,
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    index: int,
    prompt: Prompt,
) -> RequestRecord:
    try:
        return await timed_request(client, url, body, index, prompt.id)
    finally:
        gate.release()


async def warm_up(client: httpx.AsyncClient, endpoint: Endpoint, config: LoadConfig) -> dict:
    """A few sequential requests before measuring (model load, caches); never counted."""
    records = []
    for index in range(config.warmup):
        prompt = config.prompts[index % len(config.prompts)]
        body = chat_body(prompt, endpoint, config.max_tokens)
        records.append(await timed_request(client, endpoint.url, body, index, prompt.id))
    failed = [r for r in records if not r.ok]
    return {
        "sent": len(records),
        "failed": len(failed),
        "errors": dict(Counter(r.error or "incomplete" for r in failed)),
    }


def level_result(
    concurrency: int, config: LoadConfig, records: list[RequestRecord], duration_s: float
) -> dict[str, Any]:
    return {
        "concurrency": concurrency,
        "rate": config.rate,
        **summarise(records, duration_s, config.slo_ms or None),
        "per_request": [r.as_row() for r in records],
    }


async def run_sweep(
    config: LoadConfig, transport: httpx.AsyncBaseTransport | None = None
) -> dict[str, Any]:
    """The run's settings, metric conventions, per-endpoint levels and target/baseline ratios.

    `transport` replaces the network (httpx.MockTransport in unit tests)."""
    endpoints = [config.target, *([config.baseline] if config.baseline else [])]
    limits = httpx.Limits(max_connections=max(config.concurrency) + 8)
    timeout = client_timeout(config.read_timeout_s)
    clients = {
        e.name: httpx.AsyncClient(timeout=timeout, limits=limits, transport=transport)
        for e in endpoints
    }
    results: dict[str, dict[str, Any]] = {e.name: {"url": e.url, "levels": []} for e in endpoints}
    try:
        for e in endpoints:
            results[e.name]["warmup"] = await warm_up(clients[e.name], e, config)
        for position, concurrency in enumerate(config.concurrency):
            order = endpoints if position % 2 == 0 else endpoints[::-1]
            for e in order:
                records, duration = await run_level(clients[e.name], e, config, concurrency)
                results[e.name]["levels"].append(
                    level_result(concurrency, config, records, duration)
                )
    finally:
        for client in clients.values():
            await client.aclose()
    return {
        "settings": config.run_settings(),
        "conventions": CONVENTIONS,
        "endpoints": results,
        "ratios": _ratios(results, config) if config.baseline else [],
    }


def _ratios(results: dict[str, dict[str, Any]], config: LoadConfig) -> list[dict[str, Any]]:
    """target / baseline per level: above 1 means the target is slower (latency) or faster
    (throughput)."""
    assert config.baseline is not None
    target = results[config.target.name]["levels"]
    baseline = results[config.baseline.name]["levels"]
    rows = []
    for ours, theirs in zip(target, baseline, strict=True):
        row: dict[str, Any] = {"concurrency": ours["concurrency"]}
        for key, stat in RATIO_KEYS:
            a = ours[key][stat] if stat else ours[key]
            b = theirs[key][stat] if stat else theirs[key]
            row[f"{key}_{stat}" if stat else key] = round(a / b, 4) if a and b else None
        rows.append(row)
    return rows
