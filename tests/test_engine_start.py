"""The chat service starts generating before it answers and waits for the first chunk: that
is its engine health check. A dead engine is a 503 before any byte (streams included), a
dead large engine falls back to the small one, and a live one streams as before."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from serving.llm.llama_cpp import LlamaCppLLM
from serving.llm.openai_http import OpenAIHTTPLLM
from serving.llm.protocol import EngineUnavailable, Primed, SamplingParams
from tests.conftest import RemoteServer, free_port, puls_env
from tests.conftest_api import llama_cpp_server

PROMPT = "Question : Un concert à Lyon ?\nRéponse : Voici"
PARAMS = SamplingParams(max_tokens=8, temperature=0.0, seed=1)
NOW = "2025-06-01T10:00:00+02:00"
LOOKUP = "Un concert de jazz à Paris en juin 2025 ?"
COMPARISON = "Plutôt du jazz ou du théâtre à Paris en juin 2025 ?"


@pytest.mark.integration
def test_a_primed_stream_yields_the_whole_generation() -> None:
    async def run() -> None:
        llm = LlamaCppLLM(n_ctx=1024)
        await llm.warm_up()
        primed = await Primed.start(llm.stream(PROMPT, PARAMS))
        assert primed.first is not None and primed.first.text
        assert primed.first_at >= primed.opened_at
        chunks = [c async for c in primed]
        # (no comparison with an unprimed run: llama.cpp's prompt cache changes the numerics)
        assert chunks[0] is primed.first and len(chunks) > 2
        last = chunks[-1]
        assert last.usage is not None and 0 < last.usage.completion_tokens <= PARAMS.max_tokens
        assert last.finish_reason in {"stop", "length"}
        await llm.aclose()

    asyncio.run(run())


@pytest.mark.unit
def test_priming_a_dead_engine_raises_before_any_chunk() -> None:
    async def run() -> None:
        llm = OpenAIHTTPLLM(f"http://127.0.0.1:{free_port()}/v1", "gemma")
        with pytest.raises(EngineUnavailable):
            await Primed.start(llm.stream(PROMPT, PARAMS))
        await llm.aclose()

    asyncio.run(run())


@pytest.fixture(scope="module")
def engines_and_server(ingested: Path) -> Iterator[tuple[ExitStack, ExitStack, RemoteServer]]:
    """`puls serve` with two llama.cpp servers as its small and large engines; the tests
    stop them (each has its own ExitStack) while the stack keeps running."""
    small, large = ExitStack(), ExitStack()
    small_url = small.enter_context(llama_cpp_server())
    large_url = large.enter_context(llama_cpp_server())
    env = puls_env(
        ingested,
        PULS_LLM_URL=small_url,
        PULS_LLM_MODEL="gemma",
        PULS_LLM_LARGE_URL=large_url,
        PULS_LLM_LARGE_MODEL="gemma-large",
    )
    remote = RemoteServer(env)
    try:
        yield small, large, remote
    finally:
        remote.stop()
        large.close()
        small.close()


def ask(server: RemoteServer, text: str, stream: bool = False) -> httpx.Response:
    body = {
        "model": "puls",
        "messages": [{"role": "user", "content": text}],
        "stream": stream,
        "puls": {"now": NOW},
    }
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=120)


@pytest.mark.integration
@pytest.mark.slow
def test_engines_down_are_found_by_the_first_chunk(
    engines_and_server: tuple[ExitStack, ExitStack, RemoteServer],
) -> None:
    small, large, server = engines_and_server
    both_up = ask(server, COMPARISON)
    assert both_up.status_code == 200
    assert both_up.headers["x-puls-route"] == "large"

    large.close()  # the large engine dies: the small one answers, and says why
    fallback = ask(server, COMPARISON)
    assert fallback.status_code == 200, fallback.text
    assert fallback.headers["x-puls-route"] == "small"
    assert fallback.headers["x-puls-route-reason"] == "large_unavailable"
    assert fallback.json()["choices"][0]["message"]["content"].startswith("Voici")

    small.close()  # no engine left: 503 in OpenAI's shape, before any byte of a stream
    for stream in (False, True):
        down = ask(server, LOOKUP, stream=stream)
        assert down.status_code == 503, down.text
        assert down.headers["content-type"].startswith("application/json")
        assert down.json()["error"]["code"] == "engine_unavailable"
        assert "x-request-id" in down.headers
