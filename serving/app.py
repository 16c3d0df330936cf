"""The FastAPI app: `create_app(settings)` opens clients in the lifespan and warms up in the
background, so `/healthz` answers at once and `/readyz` turns green when the model is loaded.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from puls.settings import Settings
from retrieval import Retriever, close_retriever, open_retriever
from serving.errors import (
    BadRequest,
    NotReady,
    PulsAPIError,
    error_response,
    handle_api_error,
    handle_validation_error,
)
from serving.llm import LLM, build_llm
from serving.openai_api.router import router as openai_router
from serving.openai_api.service import ChatService

log = logging.getLogger(__name__)


async def warm_up(app: FastAPI, retriever: Retriever, llm: LLM) -> None:
    """Load the embedder and the model, run each once, then mark the app ready."""
    started = time.monotonic()
    try:
        await asyncio.to_thread(retriever.warm_up)
        await llm.warm_up()
    except Exception as exc:
        app.state.warm_up_error = f"{type(exc).__name__}: {exc}"
        log.exception("warm-up failed")
        return
    app.state.ready = True
    log.info(
        "ready in %.1f s (%d events indexed)", time.monotonic() - started, retriever.events.count()
    )


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        retriever = open_retriever(settings.retrieval)
        llm = build_llm(settings.serving)
        app.state.retriever = retriever
        app.state.llm = llm
        app.state.chat = ChatService(
            retriever, llm, settings.serving.served_model_name, settings.serving.answer_max_tokens
        )
        task = asyncio.create_task(warm_up(app, retriever, llm))
        try:
            yield
        finally:
            task.cancel()
            await llm.aclose()
            close_retriever(retriever)

    app = FastAPI(title="Puls", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.ready = False
    app.state.warm_up_error = None
    app.state.started = int(time.time())
    app.add_exception_handler(PulsAPIError, handle_api_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(openai_router)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up (it may still be warming up)."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        """Model loaded and every store reachable."""
        if request.app.state.warm_up_error:
            raise NotReady(
                f"warm-up failed: {request.app.state.warm_up_error}", code="warm_up_failed"
            )
        if not request.app.state.ready:
            raise NotReady("warming up", code="warming_up")
        retriever: Retriever = request.app.state.retriever
        try:
            await asyncio.to_thread(retriever.vectors.check_health)
            await asyncio.to_thread(retriever.events.check_health)
            await request.app.state.llm.check_health()
        except Exception as exc:
            raise NotReady(f"backend unavailable: {exc}", code="backend_unavailable") from exc
        return JSONResponse({"status": "ready", "events": retriever.events.count()})

    @app.middleware("http")
    async def request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers["x-request-id"] = request.headers.get("x-request-id") or _new_id()
        return response

    return app


def _new_id() -> str:
    return uuid.uuid4().hex


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (404 route, 405 method) in OpenAI's envelope too."""
    assert isinstance(exc, StarletteHTTPException)
    error = BadRequest(str(exc.detail), code="http_error")
    error.status = exc.status_code
    error.type = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return error_response(error)
