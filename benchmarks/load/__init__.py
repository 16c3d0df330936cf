"""Load benchmark for any OpenAI-compatible chat endpoint (Puls, llama.cpp server, vLLM):
TTFT, TPOT, ITL, E2E, throughput and goodput under a concurrency sweep, optionally side by side
with a baseline endpoint; and a bounded soak with many concurrent streams.

Metric definitions follow vLLM's `bench serve` and name the AIPerf equivalents (see `metrics`).
"""

from benchmarks.load.errors import BenchError, ConfigError, RequestFailed
from benchmarks.load.metrics import CONVENTIONS, RequestRecord, distribution, summarise
from benchmarks.load.prompts import DEFAULT_PROMPTS, Endpoint, Prompt, chat_url, load_prompts
from benchmarks.load.report import RESULTS_DIR
from benchmarks.load.runner import LoadConfig, run_sweep
from benchmarks.load.soak import SoakConfig, run_soak

__all__ = [
    "CONVENTIONS",
    "DEFAULT_PROMPTS",
    "RESULTS_DIR",
    "BenchError",
    "ConfigError",
    "Endpoint",
    "LoadConfig",
    "Prompt",
    "RequestFailed",
    "RequestRecord",
    "SoakConfig",
    "chat_url",
    "distribution",
    "load_prompts",
    "run_soak",
    "run_sweep",
    "summarise",
]
