"""Start-up of `puls serve`: seconds from launch to `/readyz` 200, and resident memory.

    python -m benchmarks.serve_start --data-dir DIR [--runs 2] [--out FILE]  # an ingested DIR

Three ways to serve, alternating, each `--runs` times: Ray Serve with HAProxy in front (the
default where its binary is found), Ray Serve behind its own Python proxy
(`PULS_RAY_HAPROXY=false`), and one process (`--no-ray`). Ready includes the warm-up (index
load, embedder, one generation). Memory is the sum of the resident set sizes of `puls serve`
and every process below it (Ray's, HAProxy, llama.cpp in the LLM replica), read a few seconds
after ready: shared pages count once per process, so it is an upper bound. JSON goes to
benchmarks/results/serve-start-<utc>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from benchmarks.overhead import REPO, RESULTS, _commit, _wait
from serving.ray_start import free_port

MODES = {
    "ray-haproxy": (["--ray"], {}),
    "ray-serve-proxy": (["--ray"], {"PULS_RAY_HAPROXY": "false"}),
    "no-ray": (["--no-ray"], {}),
}
SETTLE_S = 5.0  # after ready: replicas finish their start-up logging


def tree_rss(pid: int) -> tuple[int, list[str]]:
    """Resident bytes of `pid` and its descendants, and their process names."""
    root = psutil.Process(pid)
    total, names = 0, []
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
            names.append(process.name())
        except psutil.NoSuchProcess:
            pass
    return total, names


def start_once(data_dir: Path, mode: str) -> dict[str, Any]:
    """Launch `puls serve` in `mode`, time it to ready, read its memory, stop it."""
    args, extra = MODES[mode]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULS_")}
    env.update(HF_HUB_OFFLINE="1", PULS_DATA_DIR=str(data_dir), **extra)
    command = [sys.executable, "-m", "puls", "serve", *args, "--port", str(port)]
    launched = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait(f"http://127.0.0.1:{port}/readyz", process, f"puls serve ({mode})")
        ready_s = time.perf_counter() - launched
        time.sleep(SETTLE_S)
        rss, names = tree_rss(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=120)
    return {
        "mode": mode,
        "ready_s": round(ready_s, 2),
        "rss_gib": round(rss / 2**30, 3),
        "processes": len(names),
        "haproxy": "haproxy" in names,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=2, help="Starts per mode, alternating.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs takes 1 or more")
    if not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir}: not a directory (ingest into it first)")
    rows = [start_once(args.data_dir, mode) for _ in range(args.runs) for mode in MODES]
    report = {
        "benchmark": "serve_start",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "data_dir": str(args.data_dir),
        "rows": rows,
    }
    out = args.out or RESULTS / f"serve-start-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
