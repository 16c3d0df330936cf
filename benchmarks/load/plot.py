"""The run's PNG: latency (TTFT, E2E) and throughput (output tokens/s, requests/s) against
concurrency, one line per endpoint. Headless (Agg backend), so it works on a server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

LATENCIES = (("ttft_ms", "p50", "-o"), ("ttft_ms", "p99", ":o"), ("e2el_ms", "p50", "--s"))


def plot_run(run: dict[str, Any], path: Path) -> Path:
    """Write the two-panel plot of a load run to `path`."""
    fig, (latency, tokens) = plt.subplots(1, 2, figsize=(11, 4.2))
    requests = tokens.twinx()
    for colour, (name, endpoint) in enumerate(run["endpoints"].items()):
        levels = endpoint["levels"]
        x = [level["concurrency"] for level in levels]
        for key, stat, style in LATENCIES:
            y = _nan([level[key][stat] for level in levels])
            latency.plot(x, y, style, color=f"C{colour}", label=f"{name} {key[:-3]} {stat}")
        tokens.plot(
            x,
            [lv["output_throughput"] for lv in levels],
            "-o",
            color=f"C{colour}",
            label=f"{name} output tok/s",
        )
        requests.plot(x, [lv["request_throughput"] for lv in levels], "--s", color=f"C{colour}",
                      label=f"{name} req/s")  # fmt: skip
    latency.set(xlabel="concurrency", ylabel="ms", title="Latency", xscale="log", yscale="log")
    tokens.set(xlabel="concurrency", ylabel="output tokens/s (solid)", title="Throughput")
    requests.set_ylabel("requests/s (dashed)")
    tokens.set_xscale("log")
    for axis in (latency, tokens):
        axis.set_xticks(run["settings"]["concurrency"], labels=run["settings"]["concurrency"])
        axis.minorticks_off()
        axis.grid(True, alpha=0.3)
    latency.legend(fontsize=7)
    handles = tokens.get_legend_handles_labels()
    more = requests.get_legend_handles_labels()
    tokens.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7)
    fig.suptitle(f"{run['name']} ({run['machine']['cores']} cores, GPU: {run['machine']['gpu']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _nan(values: list[float | None]) -> list[float]:
    return [float("nan") if v is None else v for v in values]
