"""Optional bearer-token check on the `/v1` routes (`PULS_API_KEYS`; unset = open)."""

from __future__ import annotations

import hmac

from fastapi import Request

from serving.errors import Unauthorized

__all__ = ["require_api_key"]


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def require_api_key(request: Request) -> None:
    """FastAPI dependency: 401 in OpenAI's envelope unless the bearer token is an accepted key.

    Compared with `hmac.compare_digest` against every key, so timing tells nothing about
    which key or how much of it matched.
    """
    keys: frozenset[str] = request.app.state.api_keys
    if not keys:
        return
    token = _bearer(request)
    if token is None:
        raise Unauthorized(
            "missing bearer token: send 'Authorization: Bearer <key>'", code="missing_api_key"
        )
    matches = [hmac.compare_digest(token.encode(), key.encode()) for key in keys]
    if not any(matches):
        raise Unauthorized("invalid API key", code="invalid_api_key")
