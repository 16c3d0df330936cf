"""What the stack adds to the engine: the raw llama.cpp server vs `puls serve` on top of it.

    python -m benchmarks.overhead --data-dir DIR [--prompts FILE] [--limit 20] [--rounds 2] [--ray]
        [--engine llama|instant] [--settle-ms MS] [--set PULS_NAME=VALUE]

Starts llama-cpp-python's own OpenAI server (the raw engine) and `puls serve` with
`PULS_LLM_URL` pointing at that same server, so both paths run the SAME generation on the
same process: the stack's extra time is parse, retrieval, rendering and two HTTP hops (with
`PULS_INTRO_DURING_SEARCH`, only what of the search the engine's prefill does not hide).

For each question the stack is asked once (unmeasured) to learn how many events it cites;
the raw engine then gets the exact prompt the stack sends (`serving.answer.intro_prompt`) with
the same sampling (temperature 0, seed, top_p, stop, max_tokens). Requests are sequential
(the engine serialises) and alternate between the two systems so that no request follows one
with the same prompt (llama.cpp reuses the longest common prompt prefix of the previous
request; alternating across questions gives both the same, shared few-shot prefix).

TTFT is the first token the model generated: for the stack, the first content chunk after the
"Voici" prefix, which the stack sends just before it, once the engine's first chunk has come
(reported apart as `first_byte`). Each row says how many events the answer cites.
`overhead.ci95` gives 95 % bootstrap intervals of the overhead, and `targets` says whether
the run decides the 5 % target (`share_of_ttft_le_5pct_ci95`: met, missed or undecided).
Error events and streams without `[DONE]` count as failures. The stack's own stage
histograms (`/metrics`) say what the overhead is made of: `overhead_parts_ms` splits the mean
TTFT overhead into the ingress hop, the request body's arrival, parse, retrieval (unless the
intro starts beside it, `--set PULS_INTRO_DURING_SEARCH=true`), the rest of the stack, and
the extra hop to the engine (stage `engine_first_chunk`). JSON goes to
benchmarks/results/overhead-<utc>.json.

The stack is asked each question once before the measured rounds, so its query vector comes
from the LRU; `--set PULS_QUERY_VECTOR_CACHE=0` embeds every request afresh, as a new
question would be.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families
from pydantic import TypeAdapter, ValidationError

from benchmarks.load.prompts import DEFAULT_PROMPTS, Prompt, load_prompts
from serving.answer import INTRO_STOP, intro_prompt
from serving.llm.llama_cpp import packaged_gguf
from serving.ray_start import free_port

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 180
REQUEST_TIMEOUT = httpx.Timeout(300.0, connect=10.0)
MAX_TOKENS = 32
SEED = 1234
TOP_P = 0.9  # the stack's default; sent to the raw engine too
TARGET_RATIO = 0.05
TARGET_P95_MS = 30.0
BOOTSTRAP_SAMPLES = 2000
# What a result's settings.engine says (benchmarks/overhead_summary.py groups runs by it).
LLAMA_ENGINE = "llama-cpp-python server, packaged Gemma-3-270M Q4_K_M"
INSTANT_ENGINE = "benchmarks/instant_engine.py (no model: answers at once)"


def _wait(url: str, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{name} not ready after {START_TIMEOUT_S} s")


@contextmanager
def _process(
    args: list[str], ready_url: str, name: str, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        args, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait(ready_url, process, name)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _http_proxy(stack: subprocess.Popen[bytes]) -> str:
    """Which HTTP proxy a `puls serve --ray` runs (PULS_RAY_HAPROXY unset picks HAProxy only
    where its binary is found): `haproxy` when one is among its processes, else `serve`."""
    children = psutil.Process(stack.pid).children(recursive=True)
    return "haproxy" if any(child.name() == "haproxy" for child in children) else "serve"


def _stream(client: httpx.Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    """One streamed request: times of the content chunks, and the end; raises on failure."""
    sent = time.perf_counter()
    times: list[float] = []
    done = None
    with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {response.status_code} {response.read()[:200]!r}")
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = time.perf_counter()
                break
            event = json.loads(data)
            if event.get("error"):
                raise RuntimeError(f"{url}: error event {event['error']}")
            for choice in event.get("choices") or []:
                if (choice.get("delta") or {}).get("content") or choice.get("text"):
                    times.append(time.perf_counter())
    if done is None:
        raise RuntimeError(f"{url}: stream ended without [DONE]")
    return {"sent": sent, "chunks": times, "done": done}


def _raw_body(prompt: str) -> dict[str, Any]:
    return {
        "model": "gemma",
        "prompt": prompt,
        "max_tokens": MAX_TOKENS,
        "temperature": 0.0,
        "top_p": TOP_P,
        "seed": SEED,
        "stop": list(INTRO_STOP),
        "stream": True,
    }


def _stack_body(question: Prompt, stream: bool = True) -> dict[str, Any]:
    return {
        "model": "puls",
        "messages": [{"role": "user", "content": question.query}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0.0,
        "seed": SEED,
        "stream": stream,
        "puls": question.puls,
    }


def _stage_sums(url: str) -> dict[str, tuple[float, float]]:
    """(sum, count) of each stage histogram, and of the server-side TTFT."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    sums: dict[str, tuple[float, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = s.labels.get("stage") or s.labels.get("model")
            if family.name in {"puls_stage_duration_seconds", "puls_time_to_first_token_seconds"}:
                name = f"{family.name}:{key}"
                total, count = sums.get(name, (0.0, 0.0))
                if s.name.endswith("_sum"):
                    sums[name] = (total + s.value, count)
                elif s.name.endswith("_count"):
                    sums[name] = (total, count + s.value)
    return sums


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _dist_ms(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "n": len(ms),
        "mean": round(statistics.fmean(ms), 2),
        "p50": round(_pct(ms, 0.5), 2),
        "p95": round(_pct(ms, 0.95), 2),
    }


def _plan(client: httpx.Client, stack: str, prompts: list[Prompt]) -> list[tuple[Prompt, str, int]]:
    """The questions whose answers involve the model, each with the stack's exact prompt and
    the number of events it cites."""
    planned = []
    for question in prompts:
        r = client.post(f"{stack}/v1/chat/completions", json=_stack_body(question, stream=False))
        r.raise_for_status()
        count = len(r.json()["citations"])
        if count:  # no event → a fixed reply, the model is not called
            planned.append((question, intro_prompt(question.query), count))
    return planned


def measure(
    stack: str, raw: str, prompts: list[Prompt], rounds: int, settle_s: float = 0.0
) -> dict[str, Any]:
    """Each question once per system per round, alternating; `settle_s` of quiet before each
    request, so that neither gets the work the other is still doing after its `[DONE]`."""
    rows: list[dict[str, Any]] = []
    with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
        planned = _plan(client, stack, prompts)
        before = _stage_sums(stack)
        for r in range(rounds):
            for i, (question, prompt, count) in enumerate(planned):
                system = "raw" if (i + r) % 2 == 0 else "stack"
                time.sleep(settle_s)
                if system == "raw":
                    t = _stream(client, f"{raw}/completions", _raw_body(prompt))
                    first = t["chunks"][0]
                    first_byte = first
                else:
                    t = _stream(client, f"{stack}/v1/chat/completions", _stack_body(question))
                    first_byte = t["chunks"][0]
                    first = t["chunks"][1]  # [0] is the "Voici" prefix, sent before generating
                rows.append(
                    {
                        "prompt_id": question.id,
                        "system": system,
                        "round": r,
                        "events": count,
                        "ttft_s": first - t["sent"],
                        "first_byte_s": first_byte - t["sent"],
                        "e2e_s": t["done"] - t["sent"],
                    }
                )
        after = _stage_sums(stack)
    return {"planned": len(planned), "rows": rows, "stages": _stage_deltas(before, after)}


def _stage_deltas(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    means = {}
    for name, (total, count) in after.items():
        b_total, b_count = before.get(name, (0.0, 0.0))
        if count > b_count:
            means[name.split(":", 1)[1] if "stage" in name else "server_ttft"] = round(
                (total - b_total) / (count - b_count) * 1000, 2
            )
    return means


def _paired(rows: list[dict[str, Any]], field: str) -> list[float]:
    """stack − raw for the same question (each question is measured once by each system
    over two rounds): less sensitive to which questions are slow than p50(stack) − p50(raw)."""
    raw = {r["prompt_id"]: r[field] for r in rows if r["system"] == "raw"}
    return [r[field] - raw[r["prompt_id"]] for r in rows
            if r["system"] == "stack" and r["prompt_id"] in raw]  # fmt: skip


def _by_question(rows: list[dict[str, Any]], system: str) -> list[list[float]]:
    groups: dict[str, list[float]] = {}
    for r in rows:
        if r["system"] == system:
            groups.setdefault(r["prompt_id"], []).append(r["ttft_s"] * 1000)
    return list(groups.values())


def bootstrap_overhead(
    rows: list[dict[str, Any]], samples: int = BOOTSTRAP_SAMPLES, seed: int = SEED
) -> dict[str, list[float]]:
    """95 % intervals of the TTFT overhead (p50 and mean, ms) and of its share of the raw
    p50, by a bootstrap stratified by question: each resample redraws each question's own
    measurements of each system, so every resample asks the same questions as the run.

    One engine request here varies by ±40 ms around its question's median (docs/benchmarks.md),
    so a run's point estimate moves by several milliseconds, about the whole 5 % of a
    ~185 ms TTFT. The interval says whether a run decides the target: met when its upper
    end is ≤ 5 %, missed when its lower end is above."""
    rng = random.Random(seed)
    raw, stack = _by_question(rows, "raw"), _by_question(rows, "stack")

    def redraw(groups: list[list[float]]) -> list[float]:
        return [v for g in groups for v in rng.choices(g, k=len(g))]

    p50s, means, shares = [], [], []
    for _ in range(samples):
        r, s = redraw(raw), redraw(stack)
        raw_p50 = _pct(r, 0.5)
        p50s.append(_pct(s, 0.5) - raw_p50)
        means.append(statistics.fmean(s) - statistics.fmean(r))
        shares.append(p50s[-1] / raw_p50)

    def interval(values: list[float], digits: int) -> list[float]:
        return [round(_pct(values, 0.025), digits), round(_pct(values, 0.975), digits)]

    return {
        "ttft_p50_ms": interval(p50s, 2),
        "ttft_mean_ms": interval(means, 2),
        "share_of_ttft_p50": interval(shares, 3),
    }


def summarise(measured: dict[str, Any], search_first: bool = True) -> dict[str, Any]:
    rows = measured["rows"]
    by = {s: [r for r in rows if r["system"] == s] for s in ("raw", "stack")}
    summary: dict[str, Any] = {
        s: {
            "ttft_ms": _dist_ms([r["ttft_s"] for r in by[s]]),
            "first_byte_ms": _dist_ms([r["first_byte_s"] for r in by[s]]),
            "e2e_ms": _dist_ms([r["e2e_s"] for r in by[s]]),
        }
        for s in by
    }
    raw_ttft, stack_ttft = summary["raw"]["ttft_ms"], summary["stack"]["ttft_ms"]
    raw_e2e, stack_e2e = summary["raw"]["e2e_ms"], summary["stack"]["e2e_ms"]
    overhead = {
        "ttft_p50_ms": round(stack_ttft["p50"] - raw_ttft["p50"], 2),
        "ttft_p95_ms": round(stack_ttft["p95"] - raw_ttft["p95"], 2),
        "ttft_mean_ms": round(stack_ttft["mean"] - raw_ttft["mean"], 2),
        "e2e_p50_ms": round(stack_e2e["p50"] - raw_e2e["p50"], 2),
        "e2e_p95_ms": round(stack_e2e["p95"] - raw_e2e["p95"], 2),
        "ttft_ratio_p50": round(stack_ttft["p50"] / raw_ttft["p50"], 3),
        "ttft_ratio_p95": round(stack_ttft["p95"] / raw_ttft["p95"], 3),
        "e2e_ratio_p50": round(stack_e2e["p50"] / raw_e2e["p50"], 3),
    }
    overhead["share_of_ttft_p50"] = round(overhead["ttft_p50_ms"] / raw_ttft["p50"], 3)
    overhead["paired_ttft_ms"] = _dist_ms(_paired(rows, "ttft_s"))
    overhead["paired_e2e_ms"] = _dist_ms(_paired(rows, "e2e_s"))
    overhead["ci95"] = ci95 = bootstrap_overhead(rows)
    summary["overhead"] = overhead
    low, high = ci95["share_of_ttft_p50"]
    summary["targets"] = {
        "share_of_ttft_le_5pct": overhead["share_of_ttft_p50"] <= TARGET_RATIO,
        # "met"/"missed" only when the whole interval is on one side of 5 %
        "share_of_ttft_le_5pct_ci95": (
            "met" if high <= TARGET_RATIO else "missed" if low > TARGET_RATIO else "undecided"
        ),
        "ttft_p95_overhead_le_30ms": overhead["ttft_p95_ms"] <= TARGET_P95_MS,
    }
    stages = measured["stages"]
    summary["stage_means_ms"] = stages
    summary["overhead_parts_ms"] = overhead_parts(
        raw_ttft["mean"], stack_ttft["mean"], stages, search_first
    )
    return summary


def overhead_parts(
    raw_ms: float, stack_ms: float, stages: dict[str, float], search_first: bool = True
) -> dict[str, float]:
    """The mean TTFT overhead (`stack_ms` − `raw_ms`) in parts that add up to it, from the
    stack's own clocks:

    - ``ingress``: the client's TTFT less the stack's (`puls_time_to_first_token_seconds`,
      from the request's arrival): the HTTP hop in, and the first token's way out (on Ray,
      Serve's proxy as well);
    - ``request_body``: the request's arrival → its body's last byte (stage `request_body`;
      behind Ray Serve's Python proxy, the replica's call back to the proxy for it);
    - ``parse`` and, when the search runs before the engine is asked (`search_first`, the
      default), ``retrieve``: their stages;
    - ``in_stack``: the rest of the stack's own TTFT until the engine's first chunk (budget,
      validation, cache and session lookups, the prompt; with `PULS_INTRO_DURING_SEARCH`,
      whatever of the search the engine's prefill did not hide), and the first chunk's
      relay;
    - ``engine_hop``: the engine's TTFT as the stack sees it (stage `engine_first_chunk`)
      less the raw engine's as the client sees it: the stack's HTTP client and one more hop.

    With `PULS_INTRO_DURING_SEARCH` the search (stage `retrieve`, in `stage_means_ms`) is
    no part: it runs while the engine prefills (ADR 0009).
    """
    server, first = stages.get("server_ttft"), stages.get("engine_first_chunk")
    if server is None or first is None:
        return {}  # a stack from before the engine_first_chunk stage
    parse = stages.get("parse", 0.0)
    retrieve = stages.get("retrieve", 0.0) if search_first else 0.0
    body = stages.get("request_body", 0.0)  # 0 for a stack from before that stage
    parts = {
        "ingress": stack_ms - server,
        "request_body": body,
        "parse": parse,
        "retrieve": retrieve,
        "in_stack": server - body - parse - retrieve - first,
        "engine_hop": first - raw_ms,
    }
    if not search_first:
        del parts["retrieve"]
    return {name: round(ms, 2) for name, ms in parts.items()}


def _intro_during_search(stack_settings: dict[str, str]) -> bool:
    """Whether the stack was started with the intro beside the search, read as its settings
    read it (pydantic's bool: "true", "1", "on", "yes"...)."""
    value = stack_settings.get("PULS_INTRO_DURING_SEARCH", False)
    return TypeAdapter(bool).validate_python(value)


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="An ingested PULS_DATA_DIR.")
    parser.add_argument("--prompts", type=Path, default=DEFAULT_PROMPTS)
    parser.add_argument("--limit", type=int, default=20, help="Questions used (file order).")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="Each round asks each question once, of one system; two rounds ask both.",
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--settle-ms",
        type=float,
        default=0.0,
        help="Quiet before each request (ms), so that work left from the previous request "
        "(the stack's, after its [DONE]) cannot land on the next.",
    )
    parser.add_argument(
        "--engine",
        choices=["llama", "instant"],
        default="llama",
        help="llama: llama-cpp-python's server on the packaged GGUF (the target's baseline). "
        "instant: benchmarks/instant_engine.py, which answers at once, so that the stack's "
        "own milliseconds are measured without the engine's noise (its shares of TTFT are "
        "meaningless).",
    )
    parser.add_argument(
        "--ray", action="store_true", help="Run the stack on Ray Serve (default: --no-ray)."
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="A setting for the stack (repeatable): PULS_* (e.g. PULS_DENSE_QUERY=question) "
        "or Ray Serve's RAY_SERVE_* (e.g. RAY_SERVE_THROUGHPUT_OPTIMIZED=1).",
    )
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds takes 2 or more: each question reaches each system once every "
                     "two rounds")  # fmt: skip
    extra = dict(item.split("=", 1) for item in args.set)
    if any(not name.startswith(("PULS_", "RAY_SERVE_")) for name in extra):
        parser.error("--set takes PULS_NAME=VALUE or RAY_SERVE_NAME=VALUE")
    try:  # checked before the run, not after it
        search_first = not _intro_during_search(extra)
    except ValidationError:
        parser.error("--set PULS_INTRO_DURING_SEARCH takes true or false")

    prompts = load_prompts(args.prompts)[: args.limit]
    raw_port, stack_port = free_port(), free_port()
    raw = f"http://127.0.0.1:{raw_port}/v1"
    stack = f"http://127.0.0.1:{stack_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULS_")}
    env.update(HF_HUB_OFFLINE="1", PULS_DATA_DIR=str(args.data_dir), PULS_LLM_URL=raw,
               PULS_LLM_MODEL="gemma", **extra)  # fmt: skip
    raw_cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(packaged_gguf()),
               "--port", str(raw_port), "--interrupt_requests", "False",
               "--n_ctx", "2048"]  # fmt: skip
    engine = LLAMA_ENGINE
    if args.engine == "instant":
        raw_cmd = [sys.executable, "-m", "benchmarks.instant_engine", "--port", str(raw_port)]
        engine = INSTANT_ENGINE
    mode = "--ray" if args.ray else "--no-ray"
    stack_cmd = [sys.executable, "-m", "puls", "serve", mode, "--port", str(stack_port)]
    with (
        _process(raw_cmd, f"{raw}/models", "the raw engine", env),
        _process(stack_cmd, f"{stack}/readyz", "puls serve", env) as stack_process,
    ):
        proxy = _http_proxy(stack_process) if args.ray else None
        measured = measure(stack, raw, prompts, args.rounds, args.settle_ms / 1000)
    report = {
        "benchmark": "overhead",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "settings": {
            "max_tokens": MAX_TOKENS,
            "stack_settings": extra,
            "rounds": args.rounds,
            "settle_ms": args.settle_ms,
            "questions": len(prompts),
            "questions_with_generation": measured["planned"],
            "engine": engine,
            "stack": f"puls serve {mode}",
            "ray_http_proxy": proxy,
        },  # fmt: skip
        **summarise(measured, search_first),
        "rows": measured["rows"],
    }
    out = args.out or RESULTS / f"overhead-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
