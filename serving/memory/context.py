"""Who is asking, and which request this is, visible to the services below the routes.

The request id is set by `RequestContextMiddleware` in the ASGI scope; the principal is the
user an API key acts as (`PULS_API_KEY_USERS`). Both go into context variables so the chat
service can record a request for feedback and tie memory to the authenticated user without
the routes passing them down. Context variables follow the request into worker threads and
into the streaming task (both copy the context when they start).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

REQUEST_ID: ContextVar[str | None] = ContextVar("puls_request_id", default=None)
PRINCIPAL: ContextVar[str | None] = ContextVar("puls_principal", default=None)


def parse_key_users(raw: str | None) -> dict[str, str]:
    """`key1=alice,key2=bob` → {"key1": "alice", "key2": "bob"}."""
    pairs = (p.strip().partition("=") for p in (raw or "").split(","))
    return {key.strip(): user.strip() for key, _, user in pairs if key.strip() and user.strip()}


def bearer_token(headers: Headers) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class RequestContextVars:
    """Pure ASGI middleware: sets `REQUEST_ID` and `PRINCIPAL` for the request's duration.

    Must sit inside `RequestContextMiddleware` (it reads the id that one chose).
    """

    def __init__(self, app: ASGIApp, key_users: dict[str, str]) -> None:
        self.app = app
        self.key_users = key_users

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.get("state", {})
        token = bearer_token(Headers(scope=scope))
        id_token = REQUEST_ID.set(state.get("request_id"))
        user_token = PRINCIPAL.set(self.key_users.get(token) if token else None)
        try:
            await self.app(scope, receive, send)
        finally:
            REQUEST_ID.reset(id_token)
            PRINCIPAL.reset(user_token)
