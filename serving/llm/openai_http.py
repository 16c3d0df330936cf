"""A remote engine spoken to over OpenAI's completions API: vLLM, llama.cpp's server, TGI...

We talk HTTP rather than import vLLM: its module paths move between releases, the
protocol does not. The raw-prompt `/v1/completions` route is used because the answer
prompt is built by Puls (few-shot), the same for a base or an instruct model.

The client is aiohttp, not httpx, as in vLLM's own benchmark client: against a loopback
engine that answers at once, the stack had its first chunk 1.2-1.4 ms after a plain client
had its own with httpx's `AsyncClient`, and 0.2-0.3 ms before with aiohttp (about a fifth
of what the stack added to TTFT; `benchmarks/overhead.py --engine instant`,
docs/benchmarks.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from serving.llm.protocol import Chunk, EngineError, EngineUnavailable, SamplingParams, Usage

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0


class OpenAIHTTPLLM:
    """Streams `/completions` from an OpenAI-compatible base URL (ending in `/v1`)."""

    name = "openai-http"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # no total: a stream lasts as long as it generates; each read waits `timeout_s`
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=timeout_s
        )
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        """The engine's connection pool, opened on first use: aiohttp binds it to the
        running event loop, which the constructor may not have."""
        if self._session is None or self._session.closed:
            # no cap on connections (aiohttp's default is 100): the ingress's
            # max_ongoing_requests bounds the streams, and the engine queues past its batch
            connector = aiohttp.TCPConnector(limit=0)
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=self._timeout, connector=connector
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def check_health(self) -> None:
        try:
            async with self._client().get(f"{self.base_url}/models") as response:
                response.raise_for_status()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise EngineUnavailable(f"LLM server at {self.base_url} unreachable: {exc}") from exc

    async def warm_up(self) -> None:
        """Check the server lists its models (it may still be loading: the app retries),
        then generate once."""
        await self.check_health()
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
        url = f"{self.base_url}/completions"
        try:
            async with self._client().post(url, json=self._body(prompt, params)) as response:
                if response.status != 200:
                    detail = (await response.read()).decode(errors="replace")[:500]
                    # 503: still loading or overloaded, a state the router can route around
                    kind = EngineUnavailable if response.status == 503 else EngineError
                    raise kind(f"LLM server answered {response.status}: {detail}")
                async for raw in response.content:  # one line at a time
                    line = raw.decode().strip()
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
        except aiohttp.ClientConnectorError as exc:
            raise EngineUnavailable(f"LLM server unreachable: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise EngineError(f"LLM server failed: {exc}") from exc
        if usage is None:
            # llama.cpp's Python server ignores stream_options.include_usage. Both it and vLLM
            # stream one token per chunk, so the chunk count is the completion's token count;
            # the prompt's count is unknown and reported as 0 rather than guessed.
            log.warning("%s sent no usage; counting streamed chunks", self.base_url)
            usage = Usage(prompt_tokens=0, completion_tokens=streamed)
        yield Chunk(text="", finish_reason=finish or "stop", usage=usage)
