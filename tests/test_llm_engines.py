"""Both engines honour the LLM protocol: in-process llama.cpp, and the OpenAI HTTP client
against a real OpenAI-compatible server on loopback (llama-cpp-python's own server)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from aiohttp import web
from openai import OpenAI

from serving.llm.llama_cpp import LlamaCppLLM
from serving.llm.openai_http import OpenAIHTTPLLM
from serving.llm.protocol import LLM, EngineError, EngineUnavailable, SamplingParams, complete
from tests.conftest import RemoteServer, free_port, ingested_uids, loopback_server, puls_env
from tests.conftest_api import llama_cpp_server

pytestmark = pytest.mark.integration
PROMPT = "Question : Un concert à Lyon ?\nRéponse : Voici"
PARAMS = SamplingParams(max_tokens=12, temperature=0.0, seed=1)


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server: a real peer speaking the protocol."""
    with llama_cpp_server() as url:
        yield url


@contextmanager
def answering(status: int, body: str) -> Iterator[str]:
    """A loopback server that answers every POST with `status` and `body`, then closes."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            payload = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    with loopback_server(Handler) as url:
        yield f"{url}/v1"


async def check_contract(llm: LLM) -> None:
    await llm.warm_up()
    await llm.check_health()
    chunks = [c async for c in llm.stream(PROMPT, PARAMS)]
    text = "".join(c.text for c in chunks)
    final = chunks[-1]
    assert text.strip(), "no text generated"
    assert len(chunks) > 2, "not streamed"
    assert final.finish_reason in {"stop", "length"} and final.usage is not None
    assert 0 < final.usage.completion_tokens <= PARAMS.max_tokens
    # two overlapping requests both complete, each with its own text and usage
    # (no equality check: llama.cpp's prompt cache changes the numerics between runs)
    first, second = await asyncio.gather(
        complete(llm, PROMPT, PARAMS), complete(llm, PROMPT, PARAMS)
    )
    for generated, last in (first, second):
        assert generated.strip() and last.usage is not None and last.usage.completion_tokens > 0
    await llm.aclose()


def test_llama_cpp_in_process_honours_the_protocol() -> None:
    asyncio.run(check_contract(LlamaCppLLM(n_ctx=1024)))


def test_llama_cpp_counts_prompt_tokens() -> None:
    async def run() -> int:
        llm = LlamaCppLLM(n_ctx=1024)
        await llm.warm_up()
        _, final = await complete(llm, PROMPT, PARAMS)
        await llm.aclose()
        assert final.usage is not None
        return final.usage.prompt_tokens

    assert asyncio.run(run()) > 10


def test_llama_cpp_refuses_before_warm_up() -> None:
    with pytest.raises(EngineUnavailable):
        asyncio.run(LlamaCppLLM().check_health())


def test_http_engine_against_a_real_llama_cpp_server(llama_server: str) -> None:
    asyncio.run(check_contract(OpenAIHTTPLLM(llama_server, model="gemma")))


def test_http_engine_unreachable_is_unavailable() -> None:
    async def run() -> None:
        llm = OpenAIHTTPLLM(f"http://127.0.0.1:{free_port()}/v1", model="x")
        with pytest.raises(EngineUnavailable):
            await llm.check_health()
        with pytest.raises(EngineUnavailable):
            await complete(llm, PROMPT, PARAMS)
        await llm.aclose()

    asyncio.run(run())


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, "boom", "answered 500"),
        (200, 'data: {"error": {"message": "oom"}}\n\n', "stream error"),
        (
            200,
            'data: {"choices": [{"text": "Voi", "finish_reason": null}]}\n\n',
            "without \\[DONE\\]",
        ),
    ],
)
def test_http_engine_failures_are_engine_errors(status: int, body: str, message: str) -> None:
    async def run(url: str) -> None:
        llm = OpenAIHTTPLLM(url, model="x")
        with pytest.raises(EngineError, match=message):
            await complete(llm, PROMPT, PARAMS)
        await llm.aclose()

    with answering(status, body) as url:
        asyncio.run(run(url))


def test_http_engine_loading_is_unavailable() -> None:
    """vLLM answers 503 while it loads: the router may route around that, not around a 500."""

    async def run(url: str) -> None:
        llm = OpenAIHTTPLLM(url, model="x")
        with pytest.raises(EngineUnavailable, match="answered 503"):
            await complete(llm, PROMPT, PARAMS)
        await llm.aclose()

    with answering(503, "loading") as url:
        asyncio.run(run(url))


def test_http_engine_streams_more_at_once_than_a_default_connection_pool() -> None:
    """The ingress admits 256 requests at once (PULS_RAY_INGRESS_MAX_ONGOING_REQUESTS); a
    client pool of 100 would hold the rest back. This engine answers only once 150 are open."""
    streams = 150

    async def run() -> list[str]:
        opened, all_open = 0, asyncio.Event()

        async def completions(request: web.Request) -> web.StreamResponse:
            nonlocal opened
            opened += 1
            if opened == streams:
                all_open.set()
            await asyncio.wait_for(all_open.wait(), timeout=10)
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(
                b'data: {"choices": [{"text": "ok", "finish_reason": "stop"}]}\n\n'
            )
            await response.write(b"data: [DONE]\n\n")
            return response

        app = web.Application()
        app.router.add_post("/v1/completions", completions)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        llm = OpenAIHTTPLLM(f"http://127.0.0.1:{port}/v1", model="x")
        try:
            answers = await asyncio.gather(*(complete(llm, PROMPT, PARAMS) for _ in range(streams)))
        finally:
            await llm.aclose()
            await runner.cleanup()
        return [text for text, _ in answers]

    assert asyncio.run(run()) == ["ok"] * streams


@pytest.mark.slow
def test_the_app_answers_through_a_remote_engine(
    llama_server: str, ingested: Path, sample_files: list[Path]
) -> None:
    """PULS_LLM_URL swaps the engine by configuration; nothing else changes."""
    remote = RemoteServer(puls_env(ingested, PULS_LLM_URL=llama_server, PULS_LLM_MODEL="gemma"))
    try:
        client = OpenAI(base_url=f"{remote.url}/v1", api_key="local", max_retries=0)
        r = client.chat.completions.create(
            model="puls",
            messages=[{"role": "user", "content": "Un concert de jazz à Paris en juin 2025 ?"}],
            extra_body={"puls": {"now": "2025-06-01T10:00:00+02:00"}},
        )
    finally:
        remote.stop()
    citations = r.model_extra["citations"]
    assert citations and {c["uid"] for c in citations} <= ingested_uids(sample_files)
    assert (r.choices[0].message.content or "").startswith("Voici")
    assert r.usage is not None and r.usage.completion_tokens > 0


def test_cancelled_streams_leave_the_engine_working() -> None:
    """Cancel queued and running generations at once (what a load test's time limit does):
    llama.cpp must never run two at a time — that crashed the server — and keeps serving."""

    async def run() -> None:
        llm = LlamaCppLLM(n_ctx=1024)
        await llm.warm_up()
        long = SamplingParams(max_tokens=40, temperature=0.0)
        tasks = [asyncio.create_task(complete(llm, PROMPT, long)) for _ in range(12)]
        await asyncio.sleep(0.2)  # the first is decoding, the others are queued
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert sum(isinstance(r, asyncio.CancelledError) for r in results) >= 10
        text, last = await complete(llm, PROMPT, PARAMS)
        assert text.strip() and last.usage is not None and last.usage.completion_tokens > 0
        await llm.aclose()

    asyncio.run(run())
