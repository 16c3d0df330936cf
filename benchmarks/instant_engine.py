"""An engine that answers at once: OpenAI's streamed `/v1/completions` with no model behind it.

    python -m benchmarks.instant_engine --port 8099

For `benchmarks.overhead --engine instant`. Against llama.cpp, the stack's few milliseconds
sit beside a ~150 ms TTFT that moves by more than that from one request to the next; against
this server the raw TTFT is the HTTP round trip alone, so what the stack adds is measured to a
fraction of a millisecond, and where it goes can be told apart. It speaks the protocol the
stack's `OpenAIHTTPLLM` reads (text chunks, a usage chunk when asked, `[DONE]`), on the same
server stack as llama-cpp-python's own (uvicorn, Starlette).
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

MODEL = "instant"
WORDS = (" Voici", " des", " idées", " de", " sorties", " près", " de", " chez", " vous", ".")


def _sse(payload: dict[str, object]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def _tokens(body: dict[str, object]) -> AsyncIterator[str]:
    """`max_tokens` one-word chunks, the last with finish_reason "length", then usage."""
    completion_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    count = int(body.get("max_tokens") or 16)  # type: ignore[call-overload]
    for i in range(count):
        choice = {"index": 0, "text": WORDS[i % len(WORDS)], "logprobs": None,
                  "finish_reason": "length" if i == count - 1 else None}  # fmt: skip
        yield _sse({"id": completion_id, "object": "text_completion", "created": created,
                    "model": MODEL, "choices": [choice]})  # fmt: skip
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        prompt_tokens = len(str(body.get("prompt", "")).split())
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": count,
                 "total_tokens": prompt_tokens + count}  # fmt: skip
        yield _sse({"id": completion_id, "object": "text_completion", "created": created,
                    "model": MODEL, "choices": [], "usage": usage})  # fmt: skip
    yield "data: [DONE]\n\n"


async def completions(request: Request) -> StreamingResponse | JSONResponse:
    body = await request.json()
    if not body.get("stream"):
        error = {"message": "only stream=true is served", "type": "invalid_request_error"}
        return JSONResponse({"error": error}, status_code=400)
    return StreamingResponse(_tokens(body), media_type="text/event-stream")


async def models(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}]})


app = Starlette(
    routes=[
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
    ]
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
