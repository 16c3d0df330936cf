"""The one protocol every text-generation engine implements.

Engines take a finished prompt (the caller builds it; base models have no chat template)
and stream text. Exceptions::

    EngineError            the engine failed or answered something we cannot use
    └── EngineUnavailable  it cannot be reached or is not loaded
"""

from __future__ import annotations

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


async def complete(llm: LLM, prompt: str, params: SamplingParams) -> tuple[str, Chunk]:
    """Drain a stream: the whole text and the final chunk (finish reason, usage)."""
    parts: list[str] = []
    last = Chunk(text="")
    async for chunk in llm.stream(prompt, params):
        parts.append(chunk.text)
        last = chunk
    return "".join(parts), last
