"""Soak: open many concurrent streams at once against a loopback server, for a bounded time,
and report what came back and what the server's memory did. The question it answers is "does
the stack stay up?" (production-stack's router falls over above 1k concurrent requests), not
"how fast is it": an engine that serialises requests will not finish 1,000 in two minutes, and
the streams still open at the bound are cancelled and counted as `timed_out`, not hidden.

Server memory is the resident set of the process listening on the URL's port (or `server_pid`)
and of that process plus its children (Milvus Lite runs as a child), sampled every second.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil

from benchmarks.load.metrics import RequestRecord, summarise
from benchmarks.load.prompts import Endpoint, Prompt, chat_body
from benchmarks.load.stream import client_timeout, timed_request

SAMPLE_EVERY_S = 1.0
WATCH_AFTER_S = 20.0
"""How long the server is watched after the bound, before the health check: cancelling the
streams still open is part of the test, and a crash in native code can take seconds to end the
process (llama.cpp's abort handler prints a backtrace first, while the port still answers)."""
HEALTH_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SoakConfig:
    endpoint: Endpoint
    prompts: list[Prompt]
    streams: int = 1000
    bound_s: float = 120.0
    max_tokens: int = 8
    server_pid: int | None = None
    watch_after_s: float = WATCH_AFTER_S


def server_root(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def find_server(url: str, pid: int | None) -> psutil.Process | None:
    """The process given, else the one listening on the URL's port (None if not visible)."""
    if pid is not None:
        return psutil.Process(pid)
    port = urlsplit(url).port or 80
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            return psutil.Process(conn.pid) if conn.pid else None
    return None


def rss_mib(process: psutil.Process) -> tuple[float, float]:
    """(process, process + children) resident memory in MiB."""
    own = process.memory_info().rss
    tree = own
    for child in process.children(recursive=True):
        try:
            tree += child.memory_info().rss
        except psutil.Error:
            continue
    return own / 2**20, tree / 2**20


class MemorySampler:
    """Samples a process's RSS in the background until stopped."""

    def __init__(self, process: psutil.Process | None) -> None:
        self.process = process
        self.samples: list[tuple[float, float]] = []
        self.started = time.perf_counter()
        self.last_alive_s: float | None = None
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        if self.process is None or not _alive(self.process):
            return
        try:
            self.samples.append(rss_mib(self.process))
        except psutil.Error:
            return
        self.last_alive_s = round(time.perf_counter() - self.started, 1)

    async def _loop(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_EVERY_S)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.sample()

    def report(self) -> dict[str, Any]:
        if not self.samples:
            return {"pid": None, "note": "server process not found: pass --server-pid"}
        own = [s[0] for s in self.samples]
        tree = [s[1] for s in self.samples]
        return {
            "pid": self.process.pid if self.process else None,
            "samples": len(self.samples),
            "last_seen_alive_s": self.last_alive_s,
            "rss_mib": {"start": round(own[0], 1), "peak": round(max(own), 1),
                        "end": round(own[-1], 1)},
            "tree_rss_mib": {"start": round(tree[0], 1), "peak": round(max(tree), 1),
                             "end": round(tree[-1], 1)},
        }  # fmt: skip


async def _health(url: str) -> dict[str, int | str]:
    root = server_root(url)
    out: dict[str, int | str] = {}
    async with httpx.AsyncClient(timeout=HEALTH_TIMEOUT_S) as client:
        for path in ("/healthz", "/readyz"):
            try:
                out[path] = (await client.get(root + path)).status_code
            except httpx.HTTPError as exc:
                out[path] = f"{type(exc).__name__}"
    return out


async def run_soak(config: SoakConfig) -> dict[str, Any]:
    """Open `streams` streams at once; after `bound_s`, cancel what is left and check health."""
    process = find_server(config.endpoint.url, config.server_pid)
    sampler = MemorySampler(process)
    sampler.start()
    limits = httpx.Limits(max_connections=config.streams + 8)
    async with httpx.AsyncClient(timeout=client_timeout(config.bound_s), limits=limits) as client:
        started = time.perf_counter()
        tasks = [asyncio.create_task(_one(client, config, i)) for i in range(config.streams)]
        done, pending = await asyncio.wait(tasks, timeout=config.bound_s)
        elapsed = time.perf_counter() - started
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    await asyncio.sleep(config.watch_after_s)
    health = await _health(config.endpoint.url)
    await sampler.stop()
    records = [t.result() for t in done]
    return {
        "settings": {
            "url": config.endpoint.url,
            "streams": config.streams,
            "bound_s": config.bound_s,
            "max_tokens": config.max_tokens,
        },
        "elapsed_s": round(elapsed, 2),
        "finished": len(records),
        "timed_out": len(pending),
        "metrics_of_finished": summarise(records, elapsed),
        "server": {
            **sampler.report(),
            "alive_after": None if process is None else _alive(process),
            "health_after": health,
            "watched_after_bound_s": config.watch_after_s,
        },
    }


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def _one(client: httpx.AsyncClient, config: SoakConfig, index: int) -> RequestRecord:
    prompt = config.prompts[index % len(config.prompts)]
    body = chat_body(prompt, config.endpoint, config.max_tokens)
    return await timed_request(client, config.endpoint.url, body, index, prompt.id)
