"""Why a benchmark request or run failed.

    BenchError              base of everything this package raises
    ├── ConfigError         a bad option or prompt file: nothing was sent
    └── RequestFailed       one request did not complete; counted under its `kind`
        ├── HTTPStatusFailed    a status other than 200 (kind "http_<status>")
        ├── ErrorEvent          the stream carried an `error` object (kind "error_event")
        ├── TruncatedStream     the stream ended without `data: [DONE]` (kind "truncated")
        └── MalformedChunk      a `data:` line was not JSON (kind "malformed_chunk")

Transport failures (timeouts, refused connections) are httpx's own exceptions; `error_kind` maps
them to "timeout", "connect" and "transport" buckets.
"""

from __future__ import annotations

import httpx


class BenchError(Exception):
    """Base class."""


class ConfigError(BenchError):
    """An option or the prompt file is invalid; raised before any request is sent."""


class RequestFailed(BenchError):
    """One request failed; counted under `kind` in the run's `errors`."""

    kind = "failed"


class HTTPStatusFailed(RequestFailed):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status
        self.kind = f"http_{status}"


class ErrorEvent(RequestFailed):
    """Counted as a failure, never a success (guidellm #743 counted these as successes)."""

    kind = "error_event"


class TruncatedStream(RequestFailed):
    kind = "truncated"


class MalformedChunk(RequestFailed):
    kind = "malformed_chunk"


def error_kind(exc: BaseException) -> str:
    """The bucket a failed request is counted in."""
    if isinstance(exc, RequestFailed):
        return exc.kind
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    if isinstance(exc, httpx.TransportError):
        return "transport"
    return type(exc).__name__
