"""Chat completions: validate → budget → guard → parse turns → route → retrieve → generate the
intro → render the facts.

Returns a `ChatCompletionResponse`, or an async iterator of SSE strings for `stream=True`.
All validation and budget checks happen before the first byte, and so does the engine's first
chunk: generation starts during `prepare` and its first chunk is awaited there, which is the
health check (no extra round trip per request). A 200 stream never hides a request error or a
dead engine; an engine failure mid-stream becomes an error event, then `[DONE]`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from guardrails import MAX_QUERY_CHARS, check_input
from retrieval.query import ParsedQuery
from retrieval.search import Retriever, SearchResult
from serving.answer import INTRO_PREFIX, INTRO_STOP, intro_prompt, no_result_message, render_events
from serving.budget import BudgetExhausted, TokenBudget
from serving.cache import CachedAnswer, slot_key
from serving.errors import BadRequest, ModelNotFound, RateLimited
from serving.feedback.recent import RequestRecord
from serving.llm.protocol import (
    LLM,
    EngineError,
    EngineUnavailable,
    Primed,
    SamplingParams,
    Usage,
)
from serving.memory.bundle import MemoryServices
from serving.memory.context import PRINCIPAL, REQUEST_ID
from serving.memory.sessions import SessionState
from serving.memory.slots import conversation_query, session_summary, slots_of, turn_record
from serving.metrics import Metrics
from serving.openai_api.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    Citation,
    PulsOptions,
    ResponseMessage,
    UsageInfo,
)
from serving.profiles.bias import biased
from serving.profiles.store import Profile
from serving.routing import SMALL, Route, choose_route, degraded_route
from serving.settings import ServingSettings

log = logging.getLogger(__name__)
PARIS = ZoneInfo("Europe/Paris")


@dataclass(frozen=True)
class Outcome:
    """How generation ended: token counts and the engine's finish reason."""

    usage: Usage
    finish_reason: str


@dataclass(frozen=True)
class Prepared:
    """A validated request, its route, its retrieval result and the pieces of its answer."""

    request_id: str
    created: int
    model: str
    query: str
    params: SamplingParams
    result: SearchResult | None
    fixed_reply: str | None
    include_usage: bool
    route: Route
    degraded: bool
    user: str | None
    started: float
    cached: CachedAnswer | None = None
    cache_result: str | None = None  # hit | miss | mismatch; None = not cacheable
    cache_bucket: str | None = None
    cache_question: str = ""
    cache_themes: tuple[str, ...] = ()
    owner: str | None = None  # whose memory this request reads and writes
    session: dict[str, object] | None = None  # id, summary and slots, for the `puls` extension
    budget_local: bool = False  # the budget store is down: limits counted by this replica only
    generation: Primed | None = None  # the intro, already started (None: no model needed)

    @property
    def extension(self) -> dict[str, object] | None:
        """The response's `puls` field: the session's summary and slots, when there is one."""
        return {"session": self.session} if self.session else None

    @property
    def citations(self) -> list[Citation]:
        if self.cached is not None:
            return [Citation.model_validate(c) for c in self.cached.citations]
        if self.result is None:
            return []
        return [
            Citation(
                uid=s.event.uid,
                title=s.event.title,
                start=s.event.start.astimezone(PARIS),
                end=s.event.end.astimezone(PARIS),
                venue=s.event.venue,
                city=s.event.city,
                url=s.event.url,
                distance_km=None if s.distance_km is None else round(s.distance_km, 2),
            )
            for s in self.result.events
        ]

    def headers(self) -> dict[str, str]:
        """The routing decision, visible to the client before the body."""
        headers = {"x-puls-route": self.route.model, "x-puls-route-reason": self.route.reason}
        reasons = {"budget": self.degraded, "budget_store": self.budget_local}
        if any(reasons.values()):
            headers["x-puls-degraded"] = ",".join(r for r, on in reasons.items() if on)
        if self.cache_result is not None:
            headers["x-puls-cache"] = "hit" if self.cached is not None else "miss"
        return headers


def puls_options(raw: dict[str, object] | None) -> PulsOptions:
    """The `puls` extension; any problem in it is a 400 naming the offending key."""
    try:
        return PulsOptions.model_validate(raw or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(["puls", *(str(p) for p in first["loc"])])
        reason = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise BadRequest(f"{param}: {reason}", param=param, code="invalid_puls_option") from exc


def user_turns(request: ChatCompletionRequest) -> list[str]:
    """The user messages in order; the last one is the question and must be usable."""
    texts = [m.text().strip() for m in request.messages if m.role == "user"]
    if not texts:
        raise BadRequest("messages must contain a user message", param="messages")
    if not texts[-1]:
        raise BadRequest("the last user message is empty", param="messages")
    if len(texts[-1]) > MAX_QUERY_CHARS:
        raise BadRequest(f"the question exceeds {MAX_QUERY_CHARS} characters", param="messages")
    return [t[:MAX_QUERY_CHARS] for t in texts if t]


def last_user_text(request: ChatCompletionRequest) -> str:
    return user_turns(request)[-1]


class ChatService:
    """Answers chat completions from retrieved events; one per app, shared by requests."""

    def __init__(
        self,
        retriever: Retriever,
        engines: Mapping[str, LLM],
        budget: TokenBudget,
        metrics: Metrics,
        settings: ServingSettings,
        memory: MemoryServices | None = None,
    ) -> None:
        self.memory = memory
        self.retriever = retriever
        self.engines = engines
        self.budget = budget
        self.metrics = metrics
        self.settings = settings
        self.served_model = settings.served_model_name
        self._pending: set[asyncio.Task[None]] = set()  # cache writes in flight

    def _params(self, request: ChatCompletionRequest, degraded: bool) -> SamplingParams:
        cap = self.settings.degraded_max_tokens if degraded else self.settings.answer_max_tokens
        asked = request.max_completion_tokens or request.max_tokens or cap
        stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
        return SamplingParams(
            max_tokens=min(asked, cap),
            temperature=0.3 if request.temperature is None else request.temperature,
            top_p=0.9 if request.top_p is None else request.top_p,
            stop=(*INTRO_STOP, *stop),
            seed=request.seed,
        )

    def _top_k(self, degraded: bool) -> int:
        cap = self.settings.degraded_max_events if degraded else self.settings.max_events
        return min(self.retriever.settings.top_k, cap)

    async def _check_budget(self, user: str | None) -> bool:
        """True when the answer must degrade; 429 past a hard cap. A budget store outage
        does not fail the request: this replica's counters decide (`serving/budget.py`)."""
        try:
            check = await self.budget.check(user)
        except BudgetExhausted as exc:
            self.metrics.budget_rejections.labels(scope=exc.scope).inc()
            raise RateLimited(
                f"daily token limit reached ({exc.scope}); retry after {exc.retry_after_s} s",
                code="token_budget_exhausted",
                headers={"Retry-After": str(exc.retry_after_s)},
            ) from exc
        if self.budget.counting_locally:
            self.metrics.degraded.labels(reason="budget_store").inc()
        if check.degraded:
            self.metrics.degraded.labels(reason=f"budget_{check.scope}").inc()
        return check.degraded

    def _route(
        self, texts: list[str], now: datetime, location: tuple[float, float] | None
    ) -> tuple[Route, ParsedQuery]:
        """Parse every user turn, carry earlier slots into the last, choose the engine; the
        merged parse is what the search runs on."""
        started = time.perf_counter()
        turns = [self.retriever.parse(t, now, location) for t in texts]
        query = conversation_query(texts, turns)
        merged = turns[-1] if query == texts[-1] else self.retriever.parse(query, now, location)
        route = choose_route(merged, query, len(texts), "large" in self.engines)
        self.metrics.observe_stage("parse", time.perf_counter() - started)
        return route, merged

    def _search(self, parsed: ParsedQuery, top_k: int) -> SearchResult:
        started = time.perf_counter()
        result = self.retriever.search_parsed(parsed, top_k)
        self.metrics.observe_stage("retrieve", time.perf_counter() - started)
        return result

    async def _start(
        self, route: Route, query: str, params: SamplingParams
    ) -> tuple[Route, Primed]:
        """Start the intro on the chosen engine and wait for its first chunk; when the large
        engine cannot answer, the small one does."""
        prompt = intro_prompt(query)
        try:
            primed = await Primed.start(self.engines[route.model].stream(prompt, params))
        except EngineUnavailable:
            if route.model == SMALL:
                raise
            log.warning("large engine unavailable; answering with the small one")
            route = Route(SMALL, "large_unavailable")
            primed = await Primed.start(self.engines[SMALL].stream(prompt, params))
        # the engine's own TTFT as seen from here: the request's TTFT less this is the stack's
        self.metrics.observe_stage("engine_first_chunk", primed.first_at - primed.opened_at)
        return route, primed

    async def _search_and_start(
        self, parsed: ParsedQuery, top_k: int, route: Route, query: str, params: SamplingParams
    ) -> tuple[SearchResult, tuple[Route, Primed] | None]:
        """The search, and meanwhile the intro (`PULS_INTRO_DURING_SEARCH`, ADR 0009): its
        prompt is the question alone, so an engine on its own hardware prefills while the
        search runs instead of after it. A search that finds nothing is answered without
        the model: its intro is dropped, and an engine that failed meanwhile does not
        matter."""
        intro = asyncio.create_task(self._start(route, query, params))
        try:
            result = await asyncio.to_thread(self._search, parsed, top_k)
        except BaseException:
            await self._drop(intro)
            raise
        if not result.events:
            await self._drop(intro)
            return result, None
        return result, await intro

    async def _drop(self, intro: asyncio.Task[tuple[Route, Primed]]) -> None:
        """Stop an intro nobody will read, whether it is still starting or has started."""
        self.metrics.dropped_intros.inc()
        intro.cancel()
        try:
            _, primed = await intro
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this request is being cancelled too
            return  # stopped before its first chunk
        except Exception:
            return  # the engine failed: nothing runs
        await primed.aclose()

    async def prepare(self, request: ChatCompletionRequest, started: float) -> Prepared:
        """Everything that can fail with a 4xx, plus retrieval, before any byte is sent."""
        if request.model != self.served_model:
            raise ModelNotFound(
                f"model {request.model!r} does not exist", param="model", code="model_not_found"
            )
        options = puls_options(request.puls)
        texts = user_turns(request)
        now = options.now or datetime.now(PARIS)
        if now.tzinfo is None:
            raise BadRequest(
                "puls.now needs a UTC offset, e.g. 2025-06-01T10:00:00+02:00", param="puls.now"
            )
        degraded = await self._check_budget(request.user)
        decline = check_input(texts[-1])
        result, fixed, route = None, None, Route(SMALL, "declined")
        generation: Primed | None = None
        cache: dict[str, object] = {}
        session_info: dict[str, object] | None = None
        owner = PRINCIPAL.get() if self.settings.api_key_set() else request.user
        if decline is not None:
            fixed = decline.reply
        else:
            location = (options.location.lat, options.location.lon) if options.location else None
            session = await self._recall(options.session_id, owner)
            if session is not None:
                texts = [*session.turns, *texts] if len(texts) == 1 else texts
                location = location or session.location
            texts = texts[-self.settings.session_max_turns :]  # a window, never the transcript
            route, merged = await asyncio.to_thread(self._route, texts, now, location)
            route = degraded_route() if degraded else route
            top_k = self._top_k(degraded)
            profile = await self.memory.profile_for(owner) if self.memory else None
            sampling = self._params(request, degraded)
            cache = await self._cache_lookup(merged, owner, profile, top_k, sampling)
            started_intro: tuple[Route, Primed] | None = None
            if cache.get("cached") is None and self.settings.intro_during_search:
                result, started_intro = await self._search_and_start(
                    merged, top_k, route, texts[-1], sampling
                )
            elif cache.get("cached") is None or self._must_verify(cache):
                result = await asyncio.to_thread(self._search, merged, top_k)
            if result is not None:
                if self.memory is not None:
                    result = biased(result, profile, self.settings.profile_weight)
                fixed = None if result.events else no_result_message(result)
                cache = self._verified(cache, result)
            self._count_cache(cache)
            if started_intro is not None:
                route, generation = started_intro
            elif result is not None and fixed is None and cache.get("cached") is None:
                route, generation = await self._start(route, texts[-1], sampling)
            if options.session_id:
                session_info = await self._remember(
                    options.session_id, owner, texts, merged, location
                )
        self.metrics.routes.labels(model=route.model, reason=route.reason).inc()
        return Prepared(
            request_id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=self.served_model,
            query=texts[-1],
            params=self._params(request, degraded),
            result=result,
            fixed_reply=fixed,
            include_usage=bool(request.stream_options and request.stream_options.include_usage),
            route=route,
            degraded=degraded,
            user=request.user,
            started=started,
            owner=owner,
            session=session_info,
            budget_local=self.budget.counting_locally,
            generation=generation,
            **cache,  # type: ignore[arg-type]
        )

    @property
    def pending_cache_writes(self) -> int:
        """Answers still being written to the cache (they are stored after the response)."""
        return len(self._pending)

    async def _recall(self, session_id: str | None, owner: str | None) -> SessionState | None:
        """The session's earlier turns, when the request names a session and memory is up."""
        if self.memory is None or not session_id:
            return None
        return await self.memory.sessions.load(session_id, owner)

    async def _remember(
        self,
        session_id: str,
        owner: str | None,
        texts: list[str],
        merged: ParsedQuery,
        location: tuple[float, float] | None,
    ) -> dict[str, object] | None:
        """Store the session's window of turns, slots and summary; return what the response's
        `puls` extension shows of it."""
        if self.memory is None:
            return None
        slots = slots_of(merged)
        summary = session_summary(slots, texts)
        state = SessionState(owner, texts, slots.as_dict(), location, summary,
                             history=[turn_record(merged, texts)])  # fmt: skip
        await self.memory.sessions.remember(session_id, state)
        return {"id": session_id, "summary": summary, "slots": state.slots}

    async def _cache_lookup(
        self,
        merged: ParsedQuery,
        owner: str | None,
        profile: Profile | None,
        top_k: int,
        sampling: SamplingParams,
    ) -> dict[str, object]:
        """Prepared's cache fields: the bucket, and the cached answer on a hit.

        The sampling parameters are part of the key: an answer cut at 2 tokens, or drawn
        with another seed or temperature, is not the answer to a default request."""
        if self.memory is None or self.memory.cache is None:
            return {}
        cache, memory = self.memory.cache, self.memory
        if not memory.guard.available and not await memory.guard.probe():
            self.metrics.cache_requests.labels(result="bypass").inc()
            return {}
        try:
            version = await memory.data_version.current()
        except Exception:
            log.exception("no data version: answering without the cache")
            self.metrics.cache_requests.labels(result="bypass").inc()
            return {}
        profile_version = f"{owner}:{profile.version}" if profile is not None else None
        language = profile.language if profile is not None else "fr"
        slots = slot_key(merged, top_k=top_k, profile=profile_version, language=language,
                         sampling=repr(sampling))  # fmt: skip
        bucket = cache.bucket(slots, version)
        # what the search embeds (its content words by default): the vector comes from the
        # retriever's LRU, embedded once, and paraphrases with the same parse compare alike
        question = self.retriever.dense_text(merged)
        cached = await cache.lookup(bucket, question, merged.terms)
        if not memory.guard.available:  # the store failed during the lookup
            self.metrics.cache_requests.labels(result="bypass").inc()
            return {}
        result = "hit" if cached is not None else "miss"
        return {"cached": cached, "cache_result": result, "cache_bucket": bucket,
                "cache_question": question, "cache_themes": merged.terms}  # fmt: skip

    def _must_verify(self, cache: dict[str, object]) -> bool:
        """With `cache_verify`, a hit is checked against a fresh search unless it came from
        the same search (the same slots and dense text: `CachedAnswer.kind` "same")."""
        cached = cache.get("cached")
        same = isinstance(cached, CachedAnswer) and cached.kind == "same"
        return self.settings.cache_verify and not same

    @staticmethod
    def _verified(cache: dict[str, object], result: SearchResult) -> dict[str, object]:
        """With `cache_verify`, a hit stands only if it cites the fresh search's events, in
        its order; otherwise it is a miss (answered afresh, and stored over the old one)."""
        cached = cache.get("cached")
        if not isinstance(cached, CachedAnswer):
            return cache
        if [c["uid"] for c in cached.citations] == [s.event.uid for s in result.events]:
            return cache
        return {**cache, "cached": None, "cache_result": "mismatch"}

    def _count_cache(self, cache: dict[str, object]) -> None:
        if cache.get("cache_result") is not None:
            self.metrics.cache_requests.labels(result=str(cache["cache_result"])).inc()

    async def _after(self, prepared: Prepared, text: str) -> None:
        """Record the answer for feedback and, on a miss with events, cache it."""
        if self.memory is None:
            return
        citations = prepared.citations
        request_id = REQUEST_ID.get() or prepared.request_id
        route = prepared.cached.model if prepared.cached is not None else prepared.route.model
        await self.memory.recent.add(
            RequestRecord(
                request_id=request_id,
                query=prepared.query,
                cited_uids=[c.uid for c in citations],
                model=route,
                latency_ms=round((time.perf_counter() - prepared.started) * 1000, 2),
                user=prepared.owner,
            )
        )
        cache = self.memory.cache
        if cache is None or prepared.cached is not None or prepared.cache_bucket is None:
            return
        if prepared.fixed_reply is not None or not citations:
            return
        answer = CachedAnswer(text, [c.model_dump(mode="json") for c in citations], route)
        task = asyncio.create_task(
            cache.put(prepared.cache_bucket, prepared.cache_question, prepared.cache_themes,
                      answer, prepared.owner)
        )  # fmt: skip
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _record(
        self, prepared: Prepared, outcome: Outcome, seconds: float, first: float | None, last: float
    ) -> None:
        model, usage = prepared.route.model, outcome.usage
        self.metrics.observe_stage("generate", seconds)
        self.metrics.observe_tokens(model, usage.prompt_tokens, usage.completion_tokens)
        if first is not None and usage.completion_tokens > 1:
            tpot = (last - first) / (usage.completion_tokens - 1)
            self.metrics.tpot.labels(model=model).observe(tpot)

    async def _charge(self, user: str | None, usage: Usage) -> None:
        try:
            await self.budget.charge(user, usage.prompt_tokens + usage.completion_tokens)
        except Exception:  # the answer is made; a lost count must not turn it into an error
            log.exception("could not charge the token budget")

    async def _pieces(self, prepared: Prepared) -> AsyncIterator[str | Outcome]:
        """The answer's text pieces in order, then its outcome."""
        if prepared.cached is not None:
            yield prepared.cached.content
            yield Outcome(Usage(0, 0), "stop")
            return
        if prepared.generation is None or prepared.result is None:
            yield prepared.fixed_reply or ""
            yield Outcome(Usage(0, 0), "stop")
            return
        yield INTRO_PREFIX
        usage, finish = Usage(0, 0), "stop"
        async for piece in self._intro(prepared, prepared.generation):
            if isinstance(piece, Outcome):
                usage, finish = piece.usage, piece.finish_reason
            else:
                yield piece
        yield "\n\n" + render_events(prepared.result)
        yield Outcome(usage, finish)

    async def _intro(self, prepared: Prepared, generation: Primed) -> AsyncIterator[str | Outcome]:
        """The engine's intro text, then its outcome; records TTFT, TPOT, tokens; charges."""
        usage, finish = Usage(0, 0), "stop"
        began = generation.opened_at
        first: float | None = None
        last = began
        try:
            async for chunk in generation:
                if chunk.text:
                    last = generation.first_at if chunk is generation.first else time.perf_counter()
                    if first is None:
                        first = last
                        self.metrics.ttft.labels(model=prepared.route.model).observe(
                            first - prepared.started
                        )
                    yield chunk.text
                usage = chunk.usage or usage
                finish = chunk.finish_reason or finish
        finally:
            await generation.aclose()
        outcome = Outcome(usage, finish)
        self._record(prepared, outcome, time.perf_counter() - began, first, last)
        await self._charge(prepared.user, usage)
        yield outcome

    async def complete(self, prepared: Prepared) -> tuple[ChatCompletionResponse, dict[str, str]]:
        """The whole answer, and headers with the routing decision and token counts."""
        text: list[str] = []
        outcome = Outcome(Usage(0, 0), "stop")
        async for piece in self._pieces(prepared):
            if isinstance(piece, Outcome):
                outcome = piece
            else:
                text.append(piece)
        response = ChatCompletionResponse(
            id=prepared.request_id,
            created=prepared.created,
            model=prepared.model,
            choices=[
                Choice(
                    message=ResponseMessage(content="".join(text).strip()),
                    finish_reason=outcome.finish_reason,
                )
            ],
            usage=_usage_info(outcome.usage),
            citations=prepared.citations,
            puls=prepared.extension,
        )
        await self._after(prepared, response.choices[0].message.content)
        headers = {
            **prepared.headers(),
            "x-puls-tokens-prompt": str(outcome.usage.prompt_tokens),
            "x-puls-tokens-completion": str(outcome.usage.completion_tokens),
        }
        return response, headers

    async def stream(self, prepared: Prepared) -> AsyncIterator[str]:
        """SSE lines: role chunk, content chunks, a final chunk with citations, usage, [DONE]."""
        yield _sse(_chunk(prepared, {"role": "assistant", "content": ""}))
        outcome = Outcome(Usage(0, 0), "stop")
        text: list[str] = []
        try:
            async for piece in self._pieces(prepared):
                if isinstance(piece, Outcome):
                    outcome = piece
                elif piece:
                    text.append(piece)
                    yield _sse(_chunk(prepared, {"content": piece}))
            final = _chunk(prepared, {}, finish_reason=outcome.finish_reason)
            final["citations"] = [c.model_dump(mode="json") for c in prepared.citations]
            if prepared.extension:
                final["puls"] = prepared.extension
            yield _sse(final)
            if prepared.include_usage:
                usage = _usage_info(outcome.usage).model_dump()
                yield _sse({**_chunk(prepared, {}), "choices": [], "usage": usage})
            await self._after(prepared, "".join(text).strip())
        except EngineError as exc:
            log.exception("generation failed for %s", prepared.request_id)
            self.metrics.stream_errors.labels(model=prepared.route.model).inc()
            error = {"message": str(exc), "type": "engine_error", "param": None, "code": None}
            yield _sse({"error": error})
        yield "data: [DONE]\n\n"


def _usage_info(usage: Usage) -> UsageInfo:
    total = usage.prompt_tokens + usage.completion_tokens
    return UsageInfo(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=total,
    )


def _chunk(
    prepared: Prepared, delta: dict[str, str], finish_reason: str | None = None
) -> dict[str, object]:
    return {
        "id": prepared.request_id,
        "object": "chat.completion.chunk",
        "created": prepared.created,
        "model": prepared.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def _sse(payload: dict[str, object]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"
