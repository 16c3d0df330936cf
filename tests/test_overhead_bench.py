"""benchmarks/overhead.py's and serve_start.py's pieces: the instant engine speaks what the stack
reads, the overhead's parts add up to it, the proxy and the memory come from the process tree."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from benchmarks.overhead import (
    _http_proxy,
    _intro_during_search,
    _process,
    bootstrap_overhead,
    overhead_parts,
)
from serving.llm.openai_http import OpenAIHTTPLLM
from serving.settings import ServingSettings
from tests.conftest import free_port
from tests.test_llm_engines import check_contract


@pytest.mark.integration
def test_the_instant_engine_honours_the_protocol_the_stack_reads() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    command = [sys.executable, "-m", "benchmarks.instant_engine", "--port", str(port)]
    with _process(command, f"{url}/models", "instant engine", dict(os.environ)):
        asyncio.run(check_contract(OpenAIHTTPLLM(url, model="instant")))


def test_the_overhead_parts_add_up_to_the_overhead() -> None:
    stages = {"server_ttft": 6.0, "request_body": 0.25, "parse": 0.3, "retrieve": 3.0,
              "engine_first_chunk": 2.2}  # fmt: skip
    parts = overhead_parts(raw_ms=1.0, stack_ms=7.5, stages=stages)
    assert parts == {"ingress": 1.5, "request_body": 0.25, "parse": 0.3, "retrieve": 3.0,
                     "in_stack": 0.25, "engine_hop": 1.2}  # fmt: skip
    assert sum(parts.values()) == pytest.approx(7.5 - 1.0)
    # with the intro beside the search, the search is no part of its own (ADR 0009)
    beside = overhead_parts(1.0, 7.5, stages, search_first=False)
    assert "retrieve" not in beside and beside["in_stack"] == 3.25
    assert sum(beside.values()) == pytest.approx(7.5 - 1.0)
    assert overhead_parts(1.0, 7.5, {"server_ttft": 6.0}) == {}  # a stack without the stage


@pytest.mark.parametrize("value", ["true", "1", "on", "False", "0", "off"])
def test_the_benchmark_reads_the_overlap_setting_as_the_stack_does(value: str) -> None:
    """Which parts the overhead has depends on it: read as ServingSettings reads it."""
    stack = ServingSettings(intro_during_search=value).intro_during_search  # type: ignore[arg-type]
    assert _intro_during_search({"PULS_INTRO_DURING_SEARCH": value}) is stack
    assert _intro_during_search({}) is ServingSettings().intro_during_search


def _rows(system: str, ttfts_ms: dict[str, list[float]]) -> list[dict[str, object]]:
    return [{"system": system, "prompt_id": q, "ttft_s": ms / 1000}
            for q, values in ttfts_ms.items() for ms in values]  # fmt: skip


def test_the_bootstrap_interval_holds_the_overhead_and_narrows_with_more_requests() -> None:
    """Two questions, the stack 10 ms slower on each, both systems with the same ±20 ms
    spread: the interval holds +10 ms, and four times the requests halve its width."""
    spread = [-20.0, -10.0, 0.0, 10.0, 20.0]

    def intervals(repeat: int) -> dict[str, list[float]]:
        raw = {"a": [200 + d for d in spread] * repeat, "b": [300 + d for d in spread] * repeat}
        stack = {q: [v + 10 for v in values] for q, values in raw.items()}
        return bootstrap_overhead(_rows("raw", raw) + _rows("stack", stack), samples=500)

    few, many = intervals(1), intervals(4)
    for ci in (few, many):
        low, high = ci["ttft_mean_ms"]
        assert low < 10 < high
    width = {
        n: ci["ttft_mean_ms"][1] - ci["ttft_mean_ms"][0] for n, ci in (("few", few), ("many", many))
    }
    assert 0.3 < width["many"] / width["few"] < 0.7
    low, high = many["share_of_ttft_p50"]
    assert low <= round(10 / 280, 3) <= high  # 280 ms: the raw p50 of the 40 raw requests


def test_the_benchmark_names_the_ray_proxy_from_the_stacks_processes(tmp_path: Path) -> None:
    """Unset, PULS_RAY_HAPROXY depends on the machine: the JSON says which proxy ran, read
    from the stack's process tree (a `haproxy` below it, as Ray starts HAProxy)."""
    haproxy = tmp_path / "haproxy"
    shutil.copy("/bin/sleep", haproxy)  # a process named haproxy
    trees = {
        "haproxy": subprocess.Popen(["bash", "-c", f"{haproxy} 30; true"]),
        "serve": subprocess.Popen(["bash", "-c", "sleep 30; true"]),
    }
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(
            psutil.Process(tree.pid).children() for tree in trees.values()
        ):
            time.sleep(0.05)  # bash starts its child
        assert {name: _http_proxy(tree) for name, tree in trees.items()} == {
            "haproxy": "haproxy",
            "serve": "serve",
        }
    finally:
        for tree in trees.values():
            for child in psutil.Process(tree.pid).children(recursive=True):
                child.kill()
            tree.kill()
            tree.wait()


def test_the_start_benchmark_sums_the_memory_of_the_whole_tree() -> None:
    """`puls serve --ray`'s memory is spread over Ray's processes below it."""
    from benchmarks.serve_start import tree_rss

    tree = subprocess.Popen(["bash", "-c", "sleep 30; true"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not psutil.Process(tree.pid).children():
            time.sleep(0.05)
        (child,) = psutil.Process(tree.pid).children()
        rss, names = tree_rss(tree.pid)
        own = psutil.Process(tree.pid).memory_info().rss + child.memory_info().rss
        assert names == ["bash", "sleep"] and rss == pytest.approx(own, rel=0.05)
    finally:
        for child in psutil.Process(tree.pid).children(recursive=True):
            child.kill()
        tree.kill()
        tree.wait()
