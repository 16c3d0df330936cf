"""Routes: thin. Get the service from app.state, map its three outcomes to HTTP."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from serving.auth import require_api_key
from serving.errors import NotReady
from serving.llm.protocol import EngineError, EngineUnavailable
from serving.openai_api.protocol import ChatCompletionRequest
from serving.openai_api.service import ChatService

router = APIRouter(dependencies=[Depends(require_api_key)])


def _service(request: Request) -> ChatService:
    if not request.app.state.ready:
        raise NotReady("the model is still loading; retry in a few seconds", code="warming_up")
    service: ChatService = request.app.state.chat
    return service


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest, request: Request
) -> JSONResponse | StreamingResponse:
    service = _service(request)
    started = getattr(request.state, "started", time.perf_counter())
    try:
        prepared = await service.prepare(body, started)
        if body.stream:
            return StreamingResponse(
                service.stream(prepared),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                         **prepared.headers()},
            )  # fmt: skip
        response, headers = await service.complete(prepared)
    except EngineUnavailable as exc:
        raise NotReady(str(exc), code="engine_unavailable") from exc
    except EngineError as exc:
        raise NotReady(f"generation failed: {exc}", code="engine_error") from exc
    return JSONResponse(response.model_dump(mode="json"), headers=headers)


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, object]:
    """The chat model, then the embedding model."""
    serving = request.app.state.settings.serving
    return {
        "object": "list",
        "data": [
            {
                "id": name,
                "object": "model",
                "created": request.app.state.started,
                "owned_by": "puls",
            }
            for name in (serving.served_model_name, serving.embedding_model_name)
        ],
    }
