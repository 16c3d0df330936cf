"""Who may read or change a user's data: only that user.

With `PULS_API_KEYS` set, the user is the one the bearer key acts as (`PULS_API_KEY_USERS`,
`key=user` pairs); a key with no user may not touch any profile. Without authentication the
request must name the user itself (`?user=` or the body's `user`) and it must equal the
path: a guard against mistakes, not against an attacker (turn auth on for that).

Errors (OpenAI envelope)::

    Forbidden   403 the caller is not the user the path names
    NotFound    404 nothing stored under that name
"""

from __future__ import annotations

from fastapi import Request

from serving.errors import PulsAPIError
from serving.memory.context import PRINCIPAL


class Forbidden(PulsAPIError):
    status = 403
    type = "permission_error"


class NotFound(PulsAPIError):
    status = 404
    type = "not_found_error"


def auth_on(request: Request) -> bool:
    return bool(request.app.state.api_keys)


def acting_user(request: Request, claimed: str | None) -> str | None:
    """The authenticated principal when auth is on, else the user the request names."""
    return PRINCIPAL.get() if auth_on(request) else claimed


def require_owner(request: Request, path_user: str, claimed: str | None) -> None:
    """403 unless the caller is `path_user`."""
    caller = acting_user(request, claimed)
    if caller is None:
        how = "an API key mapped to a user" if auth_on(request) else "the `user` field"
        raise Forbidden(f"say who you are with {how}", code="user_required")
    if caller != path_user:
        raise Forbidden("a user can only read or change their own data", code="not_owner")
