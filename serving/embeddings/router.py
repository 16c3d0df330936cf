"""`POST /v1/embeddings`: thin, as the chat route."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from serving.auth import require_api_key
from serving.embeddings.protocol import EmbeddingRequest
from serving.embeddings.service import EmbeddingService
from serving.errors import NotReady

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/v1/embeddings", response_model=None)
async def embeddings(body: EmbeddingRequest, request: Request) -> JSONResponse:
    if not request.app.state.ready:
        raise NotReady("the embedder is still loading; retry in a few seconds", code="warming_up")
    service: EmbeddingService = request.app.state.embeddings
    response = await service.embed(body)
    return JSONResponse(response.model_dump(mode="json"))
