"""`POST /v1/feedback`: rate an answer by its `x-request-id`.

A thumbs-up naming a cited `event_uid`, from a user with a profile, also becomes an episodic
note in that profile ("a aimé <titre>", `serving/profiles/store.py`); the response says
whether one was noted. Users without a profile get only the feedback row.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from serving.auth import require_api_key
from serving.errors import BadRequest, NotReady
from serving.feedback.store import FeedbackIn
from serving.memory.bundle import MemoryServices
from serving.memory.sql import StoreUnavailable
from serving.profiles.access import Forbidden, NotFound, acting_user
from serving.profiles.store import ProfileStore

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/v1/feedback", status_code=201)
async def post_feedback(body: FeedbackIn, request: Request) -> JSONResponse:
    """Stored with the rated answer's question, cited uids, engine and latency."""
    memory: MemoryServices = request.app.state.memory
    record = await memory.recent.get(body.request_id)
    if record is None:
        raise NotFound(
            f"no recent answer with x-request-id {body.request_id!r}", code="request_not_found"
        )
    user = acting_user(request, body.user)
    if record.user is not None and user != record.user:
        raise Forbidden("only the user who asked may rate this answer", code="not_owner")
    if body.event_uid is not None and body.event_uid not in record.cited_uids:
        raise BadRequest("event_uid is not cited by that answer", param="event_uid")
    try:
        feedback_id = await asyncio.to_thread(memory.feedback.add, body, record, user)
        noted = False
        if body.rating == "up" and body.event_uid is not None and user is not None:
            noted = await _note_liked(request, memory.profiles, user, body.event_uid)
    except StoreUnavailable as exc:
        raise NotReady(
            f"the feedback database is unavailable: {exc}", code="feedback_store_unavailable"
        ) from exc
    request.app.state.metrics.feedback.labels(rating=body.rating).inc()
    body_out = {"id": feedback_id, "request_id": body.request_id, "noted": noted}
    return JSONResponse(body_out, status_code=201)


async def _note_liked(request: Request, profiles: ProfileStore, user: str, uid: str) -> bool:
    """Note the liked event in the user's profile (title, city, keywords from the event
    store); False when the user has no profile or the event is gone."""
    events = await asyncio.to_thread(request.app.state.retriever.events.get, [uid])
    event = events.get(uid)
    if event is None:
        return False
    return await asyncio.to_thread(
        profiles.add_note, user, uid, event.title, event.city, list(event.keywords)
    )
