"""Chat completions: validate → guard → retrieve → generate the intro → render the facts.

Returns a `ChatCompletionResponse`, or an async iterator of SSE strings for `stream=True`.
All validation and health checks happen before the first byte, so a 200 stream never hides
a request error; an engine failure mid-stream becomes an error event, then `[DONE]`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from guardrails import MAX_QUERY_CHARS, check_input
from retrieval.search import Retriever, SearchResult
from serving.answer import INTRO_PREFIX, INTRO_STOP, intro_prompt, no_result_message, render_events
from serving.errors import BadRequest, ModelNotFound
from serving.llm.protocol import LLM, EngineError, SamplingParams, Usage
from serving.openai_api.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    Citation,
    PulsOptions,
    ResponseMessage,
    UsageInfo,
)

log = logging.getLogger(__name__)
PARIS = ZoneInfo("Europe/Paris")


@dataclass(frozen=True)
class Prepared:
    """A validated request, its retrieval result and the pieces of its answer."""

    request_id: str
    created: int
    model: str
    query: str
    params: SamplingParams
    result: SearchResult | None
    fixed_reply: str | None
    include_usage: bool

    @property
    def citations(self) -> list[Citation]:
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


def puls_options(raw: dict[str, object] | None) -> PulsOptions:
    """The `puls` extension; any problem in it is a 400 naming the offending key."""
    try:
        return PulsOptions.model_validate(raw or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(["puls", *(str(p) for p in first["loc"])])
        reason = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise BadRequest(f"{param}: {reason}", param=param, code="invalid_puls_option") from exc


def last_user_text(request: ChatCompletionRequest) -> str:
    for message in reversed(request.messages):
        if message.role == "user":
            text = message.text().strip()
            if not text:
                raise BadRequest("the last user message is empty", param="messages")
            if len(text) > MAX_QUERY_CHARS:
                raise BadRequest(
                    f"the question exceeds {MAX_QUERY_CHARS} characters", param="messages"
                )
            return text
    raise BadRequest("messages must contain a user message", param="messages")


class ChatService:
    def __init__(self, retriever: Retriever, llm: LLM, served_model: str, max_tokens: int) -> None:
        self.retriever = retriever
        self.llm = llm
        self.served_model = served_model
        self.max_tokens = max_tokens

    def _params(self, request: ChatCompletionRequest) -> SamplingParams:
        asked = request.max_completion_tokens or request.max_tokens or self.max_tokens
        stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
        return SamplingParams(
            max_tokens=min(asked, self.max_tokens),
            temperature=0.3 if request.temperature is None else request.temperature,
            top_p=0.9 if request.top_p is None else request.top_p,
            stop=(*INTRO_STOP, *stop),
            seed=request.seed,
        )

    async def prepare(self, request: ChatCompletionRequest) -> Prepared:
        """Everything that can fail with a 4xx, plus retrieval, before any byte is sent."""
        if request.model != self.served_model:
            raise ModelNotFound(
                f"model {request.model!r} does not exist", param="model", code="model_not_found"
            )
        options = puls_options(request.puls)
        query = last_user_text(request)
        now = options.now or datetime.now(PARIS)
        if now.tzinfo is None:
            raise BadRequest(
                "puls.now needs a UTC offset, e.g. 2025-06-01T10:00:00+02:00", param="puls.now"
            )
        await self.llm.check_health()
        decline = check_input(query)
        result, fixed = None, None
        if decline is not None:
            fixed = decline.reply
        else:
            location = (options.location.lat, options.location.lon) if options.location else None
            result = await asyncio.to_thread(self.retriever.search, query, now, location)
            fixed = None if result.events else no_result_message(result)
        return Prepared(
            request_id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=self.served_model,
            query=query,
            params=self._params(request),
            result=result,
            fixed_reply=fixed,
            include_usage=bool(request.stream_options and request.stream_options.include_usage),
        )

    async def _pieces(self, prepared: Prepared) -> AsyncIterator[str | Usage]:
        """The answer's text pieces in order, then its usage."""
        if prepared.fixed_reply is not None or prepared.result is None:
            yield prepared.fixed_reply or ""
            yield Usage(prompt_tokens=0, completion_tokens=0)
            return
        yield INTRO_PREFIX
        usage = Usage(prompt_tokens=0, completion_tokens=0)
        prompt = intro_prompt(prepared.query, len(prepared.result.events))
        async for chunk in self.llm.stream(prompt, prepared.params):
            if chunk.text:
                yield chunk.text
            usage = chunk.usage or usage
        yield "\n\n" + render_events(prepared.result)
        yield usage

    async def complete(self, prepared: Prepared) -> ChatCompletionResponse:
        text: list[str] = []
        usage = Usage(0, 0)
        async for piece in self._pieces(prepared):
            if isinstance(piece, Usage):
                usage = piece
            else:
                text.append(piece)
        return ChatCompletionResponse(
            id=prepared.request_id,
            created=prepared.created,
            model=prepared.model,
            choices=[
                Choice(message=ResponseMessage(content="".join(text).strip()), finish_reason="stop")
            ],
            usage=_usage_info(usage),
            citations=prepared.citations,
        )

    async def stream(self, prepared: Prepared) -> AsyncIterator[str]:
        """SSE lines: role chunk, content chunks, a final chunk with citations, usage, [DONE]."""
        yield _sse(_chunk(prepared, {"role": "assistant", "content": ""}))
        usage = Usage(0, 0)
        try:
            async for piece in self._pieces(prepared):
                if isinstance(piece, Usage):
                    usage = piece
                elif piece:
                    yield _sse(_chunk(prepared, {"content": piece}))
            final = _chunk(prepared, {}, finish_reason="stop")
            final["citations"] = [c.model_dump(mode="json") for c in prepared.citations]
            yield _sse(final)
            if prepared.include_usage:
                yield _sse(
                    {
                        **_chunk(prepared, {}),
                        "choices": [],
                        "usage": _usage_info(usage).model_dump(),
                    }
                )
        except EngineError as exc:
            log.exception("generation failed for %s", prepared.request_id)
            yield _sse(
                {
                    "error": {
                        "message": str(exc),
                        "type": "engine_error",
                        "param": None,
                        "code": None,
                    }
                }
            )
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
