"""Helpers for the API tests: llama.cpp's own OpenAI server as a real engine peer, Redis
key prefixes that clean up after themselves, and a Prometheus text parser."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families

from serving.llm.llama_cpp import packaged_gguf
from tests.conftest import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"
LLAMA_START_TIMEOUT_S = 90


@contextmanager
def llama_cpp_server(port: int | None = None) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on `port` (default: a free one); yields
    its `/v1` URL."""
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(packaged_gguf()),
         "--port", str(port), "--n_ctx", "2048", "--interrupt_requests", "False"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + LLAMA_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {process.returncode}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def redis_prefix() -> Iterator[str]:
    """A Redis key prefix of the caller's own; every key under it is deleted afterwards."""
    prefix = f"puls-test:{uuid.uuid4().hex}"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def scrape(url: str) -> dict[str, float]:
    """`/metrics` as {sample name with sorted labels: value}."""
    return metric_samples(httpx.get(f"{url}/metrics", timeout=10).text)


def metric_samples(text: str) -> dict[str, float]:
    """Prometheus text as {sample name with sorted labels: value}."""
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples
