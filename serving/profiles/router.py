"""`GET/PUT/DELETE /v1/users/{user}/profile`: thin routes over `ProfileStore`.

DELETE erases everything Puls keeps about the user (profile, feedback, sessions, cache
entries, request records), not just the profile. A database outage is a 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import APIRouter, Depends, Query, Request

from serving.auth import require_api_key
from serving.errors import NotReady
from serving.memory.bundle import MemoryServices
from serving.memory.sql import StoreUnavailable
from serving.profiles.access import NotFound, require_owner
from serving.profiles.store import Profile, ProfileIn

router = APIRouter(dependencies=[Depends(require_api_key)])
T = TypeVar("T")


def _memory(request: Request) -> MemoryServices:
    memory: MemoryServices = request.app.state.memory
    return memory


async def _available(request: Request, work: Callable[[], Awaitable[T]]) -> T:
    try:
        return await work()
    except StoreUnavailable as exc:
        request.app.state.metrics.profile_store_errors.inc()
        raise NotReady(
            f"the profile database is unavailable: {exc}", code="profile_store_unavailable"
        ) from exc


@router.get("/v1/users/{user}/profile")
async def get_profile(
    user: str, request: Request, claimed: str | None = Query(None, alias="user")
) -> Profile:
    require_owner(request, user, claimed)
    memory = _memory(request)
    profile = await _available(request, lambda: asyncio.to_thread(memory.profiles.get, user))
    if profile is None:
        raise NotFound(f"no profile for user {user!r}", code="profile_not_found")
    return profile


@router.put("/v1/users/{user}/profile")
async def put_profile(user: str, body: ProfileIn, request: Request) -> Profile:
    require_owner(request, user, body.user)
    memory = _memory(request)
    return await _available(request, lambda: asyncio.to_thread(memory.profiles.put, user, body))


@router.delete("/v1/users/{user}/profile")
async def delete_profile(
    user: str, request: Request, claimed: str | None = Query(None, alias="user")
) -> dict[str, object]:
    require_owner(request, user, claimed)
    memory = _memory(request)
    erased = await _available(request, lambda: memory.erase_user(user))
    return {"user": user, "erased": erased}
