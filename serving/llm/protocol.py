"""The one protocol every text-generation engine implements.

Engines take a finished prompt (the caller builds it; base models have no chat template)
and stream text. Exceptions::

    EngineError            the engine failed or answered something we cannot use
    └── EngineUnavailable  it cannot be reached or is not loaded
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol


class EngineError(RuntimeError):
    """The engine failed while generating."""


class EngineUnavailable(EngineError):
    """The engine cannot be reached or has not loaded its model."""


@dataclass(frozen=True)
class SamplingParams:
    """Per-request generation settings, as in OpenAI's completions API."""

    max_tokens: int = 60
    temperature: float = 0.3
    top_p: float = 0.9
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Chunk:
    """A piece of generated text. The last chunk of a stream carries `finish_reason` and `usage`."""

    text: str
    finish_reason: str | None = None
    usage: Usage | None = field(default=None)


class LLM(Protocol):
    """A text-generation engine: in-process llama.cpp, or any OpenAI-compatible server."""

    name: str

    async def warm_up(self) -> None:
        """Load the model (or wait for the server) and generate once. Idempotent."""
        ...

    async def check_health(self) -> None:
        """Raise `EngineUnavailable` unless the engine can generate now."""
        ...

    async def aclose(self) -> None:
        """Release the model or the HTTP connections."""
        ...

    def stream(self, prompt: str, params: SamplingParams) -> AsyncIterator[Chunk]:
        """Generate a completion of `prompt`, chunk by chunk; the last chunk has usage."""
        ...


class Primed:
    """A stream whose first chunk has already come.

    Waiting for it before answering is the health check: an engine that cannot generate
    fails here, before any byte is sent (a 503, not a 200 stream that ends in an error),
    and a request that can be answered pays no extra round trip to ask first.
    """

    def __init__(
        self, first: Chunk | None, rest: AsyncIterator[Chunk], opened_at: float, first_at: float
    ) -> None:
        self.first = first
        self.opened_at = opened_at  # time.perf_counter() when generation was asked for
        self.first_at = first_at  # ... and when its first chunk came
        self._rest = rest

    @classmethod
    async def start(cls, stream: AsyncIterator[Chunk]) -> Primed:
        """Open `stream` and wait for its first chunk; close it if that fails."""
        opened_at = time.perf_counter()
        try:
            first: Chunk | None = await anext(stream)
        except StopAsyncIteration:
            first = None
        except BaseException:
            await _close(stream)
            raise
        return cls(first, stream, opened_at, time.perf_counter())

    async def __aiter__(self) -> AsyncIterator[Chunk]:
        if self.first is None:
            return
        yield self.first
        async for chunk in self._rest:
            yield chunk

    async def aclose(self) -> None:
        """Stop generating (the client went away, or the answer is done)."""
        await _close(self._rest)


async def _close(stream: AsyncIterator[Chunk]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


async def complete(llm: LLM, prompt: str, params: SamplingParams) -> tuple[str, Chunk]:
    """Drain a stream: the whole text and the final chunk (finish reason, usage)."""
    parts: list[str] = []
    last = Chunk(text="")
    async for chunk in llm.stream(prompt, params):
        parts.append(chunk.text)
        last = chunk
    return "".join(parts), last
