"""`POST /v1/feedback`: rate an answer by its `x-request-id`."""

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
    except StoreUnavailable as exc:
        raise NotReady(
            f"the feedback database is unavailable: {exc}", code="feedback_store_unavailable"
        ) from exc
    request.app.state.metrics.feedback.labels(rating=body.rating).inc()
    return JSONResponse({"id": feedback_id, "request_id": body.request_id}, status_code=201)
