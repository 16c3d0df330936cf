"""A remote engine spoken to over OpenAI's completions API: vLLM, llama.cpp's server, TGI...

We talk HTTP rather than import vLLM: its module paths move between releases, the
protocol does not. The raw-prompt `/v1/completions` route is used because the answer
prompt is built by Puls (few-shot), the same for a base or an instruct model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from serving.llm.protocol import Chunk, EngineError, EngineUnavailable, SamplingParams, Usage

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
WARM_UP_TIMEOUT_S = 900.0
WARM_UP_POLL_S = 2.0


class OpenAIHTTPLLM:
    """Streams `/completions` from an OpenAI-compatible base URL (ending in `/v1`)."""

    name = "openai-http"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        warm_up_timeout_s: float = WARM_UP_TIMEOUT_S,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model = model
        self.warm_up_timeout_s = warm_up_timeout_s
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def check_health(self) -> None:
        try:
            response = await self._client.get("models")
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise EngineUnavailable(
                f"LLM server at {self._client.base_url} unreachable: {exc}"
            ) from exc

    async def warm_up(self) -> None:
        """Wait until the server answers `/models` (it may still be loading), then generate once."""
        deadline = time.monotonic() + self.warm_up_timeout_s
        while True:
            try:
                await self.check_health()
                break
            except EngineUnavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(WARM_UP_POLL_S)
        async for _ in self.stream("Bonjour", SamplingParams(max_tokens=1)):
            pass

    def _body(self, prompt: str, params: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        return body

    async def stream(self, prompt: str, params: SamplingParams) -> AsyncIterator[Chunk]:
        finish: str | None = None
        usage: Usage | None = None
        streamed = 0
        try:
            async with self._client.stream(
                "POST", "completions", json=self._body(prompt, params)
            ) as response:
                if response.status_code != 200:
                    detail = (await response.aread()).decode(errors="replace")[:500]
                    # 503: still loading or overloaded, a state the router can route around
                    kind = EngineUnavailable if response.status_code == 503 else EngineError
                    raise kind(f"LLM server answered {response.status_code}: {detail}")
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    if "error" in event:
                        raise EngineError(f"LLM server stream error: {event['error']}")
                    if event.get("usage"):
                        usage = Usage(
                            prompt_tokens=int(event["usage"]["prompt_tokens"]),
                            completion_tokens=int(event["usage"]["completion_tokens"]),
                        )
                    for choice in event.get("choices") or []:
                        finish = choice.get("finish_reason") or finish
                        if choice.get("text"):
                            streamed += 1
                            yield Chunk(text=choice["text"])
                else:
                    raise EngineError("LLM server stream ended without [DONE]")
        except httpx.ConnectError as exc:
            raise EngineUnavailable(f"LLM server unreachable: {exc}") from exc
        except httpx.HTTPError as exc:
            raise EngineError(f"LLM server failed: {exc}") from exc
        if usage is None:
            # llama.cpp's Python server ignores stream_options.include_usage. Both it and vLLM
            # stream one token per chunk, so the chunk count is the completion's token count;
            # the prompt's count is unknown and reported as 0 rather than guessed.
            log.warning("%s sent no usage; counting streamed chunks", self._client.base_url)
            usage = Usage(prompt_tokens=0, completion_tokens=streamed)
        yield Chunk(text="", finish_reason=finish or "stop", usage=usage)
