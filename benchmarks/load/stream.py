"""One timed streaming request: read the SSE stream chunk by chunk and stamp each one.

Timestamps come from `time.perf_counter()` (monotonic) taken as each `data:` line is read, which
is what vLLM's benchmark client does. Tokens are counted from the usage chunk when the server
sends one (`stream_options.include_usage`); otherwise one token per content chunk, and the record
says so. A stream that ends without `data: [DONE]`, or carries an `error` object, is a failure.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from benchmarks.load.errors import (
    ErrorEvent,
    HTTPStatusFailed,
    MalformedChunk,
    TruncatedStream,
    error_kind,
)
from benchmarks.load.metrics import RequestRecord

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 300.0
"""Longest silence between two bytes: a request queued behind many others sends nothing."""


def client_timeout(read_s: float = READ_TIMEOUT_S) -> httpx.Timeout:
    return httpx.Timeout(connect=CONNECT_TIMEOUT_S, read=read_s, write=30.0, pool=None)


async def timed_request(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], index: int, prompt_id: str
) -> RequestRecord:
    """Send one streaming request; failures are recorded on the record, never raised."""
    record = RequestRecord(index=index, prompt_id=prompt_id, sent=time.perf_counter())
    try:
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode("utf-8", "replace")
                raise HTTPStatusFailed(response.status_code, text)
            await _read_events(response, record)
    except Exception as exc:  # every failure is counted by kind, none aborts the run
        record.error = error_kind(exc)
        record.message = str(exc)[:300] or type(exc).__name__
    return record


async def _read_events(response: httpx.Response, record: RequestRecord) -> None:
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue  # blank separators, `: ping` comments, `event:` / `id:` fields
        data = line[len("data:") :].strip()
        now = time.perf_counter()
        if data == "[DONE]":
            record.done = now
            break
        _apply_chunk(_decode(data), record, now)
    if record.done is None:
        raise TruncatedStream("the stream ended without data: [DONE]")


def _decode(data: str) -> dict[str, Any]:
    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        raise MalformedChunk(f"not JSON: {data[:120]!r}") from exc
    if not isinstance(payload, dict):
        raise MalformedChunk(f"not a JSON object: {data[:120]!r}")
    return payload


def _apply_chunk(payload: dict[str, Any], record: RequestRecord, now: float) -> None:
    if payload.get("error") is not None:
        error = payload["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise ErrorEvent(f"error event: {message}")
    for choice in payload.get("choices") or []:
        delta = choice.get("delta") or {}
        if delta.get("content") or choice.get("text"):
            record.content_times.append(now)
            break
    usage = payload.get("usage")
    if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
        record.usage_tokens = int(usage["completion_tokens"])
