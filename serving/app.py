"""The FastAPI app: `create_app(settings)` opens clients in the lifespan and warms up in the
background, so `/healthz` answers at once and `/readyz` turns green when the models are loaded.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from tenacity import AsyncRetrying, RetryCallState, wait_exponential

from puls.settings import Settings
from retrieval import Retriever, close_retriever, open_retriever
from serving.budget import Limits, TokenBudget, open_budget_store
from serving.embeddings.router import router as embeddings_router
from serving.embeddings.service import E5TokenCounter, EmbeddingService
from serving.errors import (
    BadRequest,
    NotReady,
    PayloadTooLarge,
    PulsAPIError,
    Unauthorized,
    error_response,
    handle_api_error,
    handle_validation_error,
)
from serving.feedback.router import router as feedback_router
from serving.llm import LLM, build_large_llm, build_llm
from serving.memory.bundle import build_memory
from serving.memory.context import RequestContextVars, parse_key_users
from serving.metrics import CONTENT_TYPE_LATEST, Metrics
from serving.middleware import BodyLimitMiddleware, RequestContextMiddleware
from serving.openai_api.router import router as openai_router
from serving.openai_api.service import ChatService
from serving.profiles.router import router as profiles_router
from serving.settings import ServingSettings
from serving.stage_timing import time_reranker

log = logging.getLogger(__name__)


WARM_UP_RETRY_MAX_S = 15.0


async def warm_up(
    app: FastAPI, retriever: Retriever, engines: dict[str, LLM], budget: TokenBudget
) -> None:
    """Load the embedder and the small model, run each once, then mark the app ready.

    Each part is retried until it succeeds, every 1 s growing to `WARM_UP_RETRY_MAX_S`: an
    engine still loading its weights (vLLM takes minutes) or a store starting beside the pod
    delays readiness instead of leaving the replica unready for good. Meanwhile `/readyz`
    says what failed last. The budget store is probed but optional, like session memory:
    while it is down, answers count tokens in this process (`serving/budget.py`)."""
    started = time.monotonic()

    async def ready_parts() -> None:
        await asyncio.to_thread(retriever.warm_up)
        await engines["small"].warm_up()
        await budget.probe()
        await asyncio.to_thread(app.state.embeddings.counter.count, "concert")

    await _retry_until_done(ready_parts, "warm-up", app)
    app.state.warm_up_error = None
    freeze_startup_objects()
    app.state.ready = True
    log.info(
        "ready in %.1f s (%d events indexed, engines: %s)",
        time.monotonic() - started,
        retriever.events.count(),
        ", ".join(engines),
    )


async def warm_up_large(engines: dict[str, LLM]) -> None:
    """Warm the large route, retrying as `warm_up` does. Readiness does not wait for it: the
    router falls back to the small model while it is down."""
    for name, engine in engines.items():
        if name != "small":
            await _retry_until_done(engine.warm_up, f"warm-up of the {name} engine")


async def _retry_until_done(
    step: Callable[[], Awaitable[None]], what: str, app: FastAPI | None = None
) -> None:
    """Run `step` until it returns, logging each failure (and keeping it in
    `app.state.warm_up_error` for `/readyz`). Cancelled at shutdown."""

    def note(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        error = f"{type(exc).__name__}: {exc}"
        log.warning(
            "%s failed (attempt %d, next in %.0f s): %s", what, state.attempt_number, wait, error
        )
        if app is not None:
            app.state.warm_up_error = error

    retrying = AsyncRetrying(
        wait=wait_exponential(multiplier=1, max=WARM_UP_RETRY_MAX_S), before_sleep=note
    )
    async for attempt in retrying:
        with attempt:
            await step()


def freeze_startup_objects() -> None:
    """Put what is alive after warm-up (libraries, models, indexes, the event copy: ~200k
    objects) out of the cyclic garbage collector's reach. A full collection over them took
    77-90 ms here, a pause any request could land on; they live as long as the process.
    vLLM does the same after start-up (`vllm.utils.gc_utils.freeze_gc_heap`)."""
    gc.collect()
    gc.freeze()


def build_engines(settings: ServingSettings) -> dict[str, LLM]:
    """`small` always; `large` when `PULS_LLM_LARGE_URL` is set."""
    engines = {"small": build_llm(settings)}
    large = build_large_llm(settings)
    if large is not None:
        engines["large"] = large
    return engines


def build_budget(settings: ServingSettings) -> TokenBudget:
    limits = Limits(
        budget=settings.daily_token_budget,
        budget_per_user=settings.daily_token_budget_per_user,
        hard_cap=settings.daily_token_hard_cap,
        hard_cap_per_user=settings.daily_token_hard_cap_per_user,
    )
    return TokenBudget(open_budget_store(settings.redis_url), limits, settings.budget_key_prefix)


def _open_retriever(settings: Settings) -> Retriever:
    return open_retriever(settings.retrieval)


def create_app(
    settings: Settings,
    engine_factory: Callable[[ServingSettings], dict[str, LLM]] = build_engines,
    retriever_factory: Callable[[Settings], Retriever] = _open_retriever,
    echo_request_id: bool = True,
    wait_for_warm_up: bool = False,
) -> FastAPI:
    """The API. `engine_factory` and `retriever_factory` build the engines and the retriever
    in the lifespan: in-process or remote by default, or through Ray Serve deployments
    (serving/deployments.py), whose proxy already answers with the request id
    (`echo_request_id=False`, see RequestContextMiddleware).

    The lifespan starts the warm-up and, by default, serves meanwhile: `/healthz` answers and
    `/readyz` tells Kubernetes when to send traffic. `wait_for_warm_up=True` ends the
    lifespan's start-up only once warm, for Ray Serve, which routes requests to a replica
    as soon as that start-up is over and has no readiness probe."""
    serving = settings.serving
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # a thread: opening may block on a Serve handle (the Embedder deployment's size)
        retriever = await asyncio.to_thread(retriever_factory, settings)
        time_reranker(retriever, metrics)
        engines = engine_factory(serving)
        budget = build_budget(serving)
        app.state.retriever = retriever
        app.state.engines = engines
        app.state.budget = budget
        database_url = settings.retrieval.resolved_database_url()
        memory = build_memory(serving, retriever, database_url, metrics)
        app.state.memory = memory
        app.state.chat = ChatService(retriever, engines, budget, metrics, serving, memory)
        app.state.embeddings = EmbeddingService(
            retriever.embedder,
            E5TokenCounter(),
            serving.embedding_model_name,
            serving.max_embedding_inputs,
            metrics,
        )
        tasks = [
            asyncio.create_task(warm_up(app, retriever, engines, budget)),
            asyncio.create_task(warm_up_large(engines)),
        ]
        try:
            if wait_for_warm_up:
                await tasks[0]
            yield
        finally:
            for task in tasks:
                task.cancel()
            for engine in engines.values():
                await engine.aclose()
            await budget.store.aclose()
            await memory.aclose()
            close_retriever(retriever)

    app = FastAPI(title="Puls", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.api_keys = serving.api_key_set()
    app.state.ready = False
    app.state.warm_up_error = None
    app.state.started = int(time.time())
    app.add_exception_handler(PulsAPIError, handle_api_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(openai_router)
    app.include_router(embeddings_router)
    app.include_router(feedback_router)
    app.include_router(profiles_router)
    _add_probes(app, metrics)
    # Innermost: reads the request id RequestContextMiddleware chose.
    app.add_middleware(RequestContextVars, key_users=parse_key_users(serving.api_key_users))
    # Added last = outermost: the request id and the metrics see every response, 413s included.
    app.add_middleware(BodyLimitMiddleware, max_bytes=serving.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=metrics, echo_request_id=echo_request_id)
    return app


def _add_probes(app: FastAPI, metrics: Metrics) -> None:
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up (it may still be warming up)."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        """Models loaded and every store reachable (the large engine may be down: the
        router falls back to the small one)."""
        state = request.app.state
        if state.warm_up_error:
            raise NotReady(
                f"warm-up failed, retrying: {state.warm_up_error}", code="warm_up_failed"
            )
        if not state.ready:
            raise NotReady("warming up", code="warming_up")
        retriever: Retriever = state.retriever
        try:
            await asyncio.to_thread(retriever.vectors.check_health)
            await asyncio.to_thread(retriever.events.check_health)
            await state.engines["small"].check_health()
        except Exception as exc:
            raise NotReady(f"backend unavailable: {exc}", code="backend_unavailable") from exc
        # Session memory, the cache and shared budgets are optional: answers still come.
        degraded = [] if await state.memory.guard.probe() else ["memory"]
        degraded += [] if await state.budget.probe() else ["budget"]
        engines = {route: engine.name for route, engine in state.engines.items()}
        body = {"status": "ready", "events": retriever.events.count(), "degraded": degraded,
                "engines": engines}  # fmt: skip
        return JSONResponse(body)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        """Prometheus text exposition of this app's registry."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)


_STATUS_ERRORS: dict[int, type[PulsAPIError]] = {401: Unauthorized, 413: PayloadTooLarge}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (404 route, 405 method, 413 body) in OpenAI's envelope too."""
    assert isinstance(exc, StarletteHTTPException)
    kind = _STATUS_ERRORS.get(exc.status_code, BadRequest)
    code = "request_too_large" if exc.status_code == 413 else "http_error"
    error = kind(str(exc.detail), code=code)
    error.status = exc.status_code
    if exc.status_code == 404:
        error.type = "not_found_error"
    return error_response(error)
