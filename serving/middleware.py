"""Pure ASGI middleware: request id + request metrics, and the request body size limit.

Pure ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware wraps every
response in an extra task and memory stream, which costs time to first byte on streams,
the very thing the overhead benchmark measures.
"""

from __future__ import annotations

import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import PayloadTooLarge, error_response
from serving.metrics import Metrics

UNMATCHED_ROUTE = "unmatched"


def route_label(scope: Scope) -> str:
    """The matched route's template (bounded label values); unknown paths share one label."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else UNMATCHED_ROUTE


class RequestContextMiddleware:
    """Gives every response an `x-request-id` (the client's, or a new one) and counts it.

    Also stores the arrival time in `request.state.started`: time to first token is
    measured from there, so it includes everything the stack adds. The stage
    `request_body` is the arrival → the body's last byte: under uvicorn the body comes with
    the request, while behind Ray Serve's Python proxy the replica fetches it from the proxy
    actor with a call of its own (`ASGIReceiveProxy` in Ray Serve), which this shows apart.

    `echo_request_id=False` under Ray Serve: Serve's own middleware (in its proxy, or in the
    replica with direct ingress and HAProxy) puts the id on the request before the app sees
    it and appends it to the response, so a second header here made `x-request-id: a, a`.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, echo_request_id: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.echo_request_id = echo_request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = Headers(scope=scope).get("x-request-id") or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"], state["started"] = request_id, started
        status = 500

        async def timed_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                self.metrics.observe_stage("request_body", time.perf_counter() - started)
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if self.echo_request_id:
                    MutableHeaders(scope=message)["x-request-id"] = request_id
            await send(message)

        try:
            await self.app(scope, timed_receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.observe_request(route_label(scope), scope["method"], status, elapsed)


class BodyLimitMiddleware:
    """Refuses bodies over `max_bytes` with 413: by Content-Length before reading, and by
    counting the bytes of a chunked body as they arrive (a client can lie or omit it)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"request body exceeds {self.max_bytes} bytes", code="request_too_large"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await error_response(self._too_large())(scope, receive, send)
            return
        seen = 0

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # FastAPI re-raises HTTPException from body reading; the app's handler
                    # turns it into the same 413 envelope as above.
                    raise HTTPException(413, self._too_large().message)
            return message

        await self.app(scope, counted_receive, send)
