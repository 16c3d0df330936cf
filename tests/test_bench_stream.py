"""The benchmark's streaming client and scheduler against httpx.MockTransport peers speaking SSE:
what counts as success, each failure kind, concurrency bounds, Poisson arrivals, the baseline."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
from collections.abc import AsyncIterator, Awaitable, Callable
from itertools import islice, pairwise

import httpx
import pytest

from benchmarks.load import Endpoint, LoadConfig, Prompt, run_sweep
from benchmarks.load.metrics import RequestRecord
from benchmarks.load.runner import arrival_offsets, run_level
from benchmarks.load.stream import timed_request

pytestmark = pytest.mark.unit

URL = "http://bench.test/v1/chat/completions"
PROMPTS = [Prompt("a", "Un concert à Valence ?", {"now": "2025-10-01T09:00:00+02:00"})]
Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def chunk(content: str | None = None, **extra: object) -> str:
    delta = {} if content is None else {"content": content}
    payload = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}
    return f"data: {json.dumps({**payload, **extra})}\n\n"


USAGE = 'data: {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 5}}\n\n'
DONE = "data: [DONE]\n\n"


def sse(*events: str, gap_s: float = 0.0) -> Handler:
    async def handler(request: httpx.Request) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            for event in events:
                await asyncio.sleep(gap_s)
                yield event.encode()

        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})

    return handler


def send(handler: Handler, body: dict | None = None) -> RequestRecord:
    async def run() -> RequestRecord:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await timed_request(client, URL, body or {}, 0, "a")

    return asyncio.run(run())


def test_complete_stream_counts_tokens_from_usage() -> None:
    role = 'data: {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}\n\n'
    r = send(sse(role, ": ping\n\n", chunk("Voici"), chunk(" deux"), chunk(), USAGE, DONE))
    assert r.ok and r.error is None
    assert len(r.content_times) == 2  # the empty role chunk and the final chunk carry no token
    assert r.usage_tokens == 5 and r.token_source == "usage"
    assert r.done is not None and r.done >= r.content_times[-1] >= r.sent


def test_stream_without_usage_chunk_counts_chunks() -> None:
    r = send(sse(chunk("a"), chunk("b"), chunk("c"), DONE))
    assert r.ok and r.token_source == "chunks" and r.output_tokens == 3


@pytest.mark.parametrize(
    ("events", "kind"),
    [
        ((chunk("a"), chunk("b")), "truncated"),
        ((chunk("a"), 'data: {"error": {"message": "engine died"}}\n\n', DONE), "error_event"),
        ((chunk("a"), "data: {half\n\n", DONE), "malformed_chunk"),
    ],
)
def test_broken_streams_are_failures_by_kind(events: tuple[str, ...], kind: str) -> None:
    r = send(sse(*events))
    assert not r.ok and r.error == kind and r.message


def test_http_errors_and_refused_connections_are_failures() -> None:
    async def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": {"message": "not ready"}})

    async def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    assert send(busy).error == "http_503"
    assert send(refused).error == "connect"


def test_a_level_never_exceeds_its_concurrency() -> None:
    state = {"now": 0, "max": 0}

    async def handler(request: httpx.Request) -> httpx.Response:
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        await asyncio.sleep(0.02)
        state["now"] -= 1
        return httpx.Response(200, text=chunk("x") + DONE)

    config = LoadConfig(target=Endpoint("t", URL, "puls"), prompts=PROMPTS, requests=9)

    async def run() -> tuple[list[RequestRecord], float]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await run_level(client, config.target, config, 3)

    records, duration = asyncio.run(run())
    assert len(records) == 9 and all(r.ok for r in records)
    assert state["max"] == 3
    assert duration >= 3 * 0.02  # three waves of three


def test_poisson_arrivals_are_seeded_with_the_requested_mean_gap() -> None:
    offsets = list(islice(arrival_offsets(4.0, random.Random(7)), 2001))
    gaps = [b - a for a, b in pairwise(offsets)]
    assert offsets[0] == 0.0
    assert statistics.mean(gaps) == pytest.approx(0.25, rel=0.1)
    assert list(islice(arrival_offsets(4.0, random.Random(7)), 5)) == offsets[:5]
    assert set(islice(arrival_offsets(None, random.Random(7)), 5)) == {0.0}


def test_duration_bound_level_stops_sending() -> None:
    config = LoadConfig(
        target=Endpoint("t", URL, "puls"), prompts=PROMPTS, requests=None, duration_s=0.2
    )

    async def run() -> list[RequestRecord]:
        transport = httpx.MockTransport(sse(chunk("x"), DONE, gap_s=0.02))
        async with httpx.AsyncClient(transport=transport) as client:
            return (await run_level(client, config.target, config, 2))[0]

    records = asyncio.run(run())
    assert 2 <= len(records) <= 2 * 0.2 / 0.04 + 2


def test_sweep_alternates_target_and_baseline_and_reports_ratios() -> None:
    calls: list[tuple[str, bool]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append((request.url.host, "puls" in body))
        if request.url.host == "ours":
            return await sse(chunk("a"), chunk("b"), USAGE, DONE, gap_s=0.01)(request)
        return await sse(chunk("a"), chunk("b"), DONE, gap_s=0.005)(request)

    config = LoadConfig(
        target=Endpoint("target", "http://ours/v1/chat/completions", "puls"),
        baseline=Endpoint("baseline", "http://raw/v1/chat/completions", "g", extension=False),
        prompts=PROMPTS,
        concurrency=(1, 2),
        requests=2,
        warmup=1,
        slo_ms={"e2e_ms": 10_000},
    )
    run = asyncio.run(run_sweep(config, transport=httpx.MockTransport(handler)))
    hosts = [host for host, _ in calls]
    assert hosts == ["ours", "raw"] + ["ours"] * 2 + ["raw"] * 2 + ["raw"] * 2 + ["ours"] * 2
    assert all(extension == (host == "ours") for host, extension in calls)
    target, baseline = run["endpoints"]["target"], run["endpoints"]["baseline"]
    assert target["warmup"] == {"sent": 1, "failed": 0, "errors": {}}
    assert [lv["token_counting"] for lv in target["levels"]] == ["usage", "usage"]
    assert [lv["token_counting"] for lv in baseline["levels"]] == ["chunks", "chunks"]
    assert [lv["goodput"] > 0 for lv in target["levels"]] == [True, True]
    assert [row["concurrency"] for row in run["ratios"]] == [1, 2]
    ratio = run["ratios"][0]["output_throughput"]
    expected = target["levels"][0]["output_throughput"] / baseline["levels"][0]["output_throughput"]
    assert ratio == pytest.approx(expected, rel=1e-3)
    assert set(run["conventions"]) >= {"ttft_ms", "tpot_ms", "itl_ms", "e2el_ms", "goodput"}
