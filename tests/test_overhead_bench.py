"""benchmarks/overhead.py's pieces: the instant engine speaks what the stack reads, and the
overhead's parts add up to it."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from benchmarks.overhead import _process, overhead_parts
from serving.llm.openai_http import OpenAIHTTPLLM
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
    assert overhead_parts(1.0, 7.5, {"server_ttft": 6.0}) == {}  # a stack without the stage
