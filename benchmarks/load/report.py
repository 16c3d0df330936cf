"""What a result file says besides the metrics (machine, commit), and the three files of a run:
`<name>.json` (everything), `<name>.png` (the plot) and `<name>.md` (a short summary).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent.parent
RESULTS_DIR = REPO / "benchmarks" / "results"
SCHEMA = "puls.bench.load/1"


def machine_info() -> dict[str, Any]:
    """Enough to tell two result files' machines apart; no host name. The load average says
    whether something else was using the cores when the run started."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": "nvidia-smi present" if shutil.which("nvidia-smi") else "none",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def current_commit(repo: Path = REPO) -> str | None:
    """HEAD's commit, read from .git without running git (None outside a checkout)."""
    git = repo / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[len("ref: ") :]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(f" {ref}"):
                return line.split()[0]
    except OSError:
        return None
    return None


def run_name(kind: str, label: str | None, when: datetime) -> str:
    stamp = when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{kind}-{label}-{stamp}" if label else f"{kind}-{stamp}"


def envelope(kind: str, label: str | None) -> dict[str, Any]:
    """The head of every result file."""
    now = datetime.now(UTC)
    return {
        "schema": SCHEMA if kind == "load" else f"puls.bench.{kind}/1",
        "name": run_name(kind, label, now),
        "label": label,
        "started_at": now.isoformat(timespec="seconds"),
        "commit": current_commit(),
        "machine": machine_info(),
    }


def write_json(run: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{run['name']}.json"
    path.write_text(json.dumps(run, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def summary_markdown(run: dict[str, Any]) -> str:
    """One table per endpoint and the ratio table; the conventions in one line each."""
    s = run["settings"]
    lines = [
        f"# Load benchmark {run['name']}",
        "",
        f"commit `{run['commit']}` · {run['machine']['cores']} cores "
        f"({run['machine']['cpu']}) · GPU: {run['machine']['gpu']} · "
        f"load average at start {run['machine']['load_avg_1m_at_start']}",
        "",
        _settings_line(s),
        "",
    ]
    for name, endpoint in run["endpoints"].items():
        lines += _endpoint_table(name, endpoint, bool(s["slo_ms"]))
    if run["ratios"]:
        lines += _ratio_table(run["ratios"])
    lines += ["## Conventions", ""]
    lines += [f"- `{key}`: {text}" for key, text in run["conventions"].items()]
    return "\n".join(lines) + "\n"


def _settings_line(s: dict[str, Any]) -> str:
    amount = (
        f"{s['requests_per_level']} requests per level"
        if s["requests_per_level"]
        else f"{s['duration_s']} s per level"
    )
    rate = f"Poisson {s['rate']} req/s" if s["rate"] else "no rate limit"
    slo = ", ".join(f"{k}≤{v:g}" for k, v in s["slo_ms"].items()) or "none"
    return (
        f"{amount}, concurrency {s['concurrency']}, {rate}, max_tokens {s['max_tokens']}, "
        f"warm-up {s['warmup']}, SLO {slo}"
    )


def _endpoint_table(name: str, endpoint: dict[str, Any], with_goodput: bool) -> list[str]:
    lines = [
        f"## {name}: {endpoint['url']}",
        "",
        "| conc. | ok/sent | errors | TTFT p50/p99 ms | TPOT p50 ms | ITL p50 ms "
        "| E2E p50/p99 ms | req/s | out tok/s | goodput | tokens from |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for level in endpoint["levels"]:
        errors = ", ".join(f"{k}={v}" for k, v in level["errors"].items()) or "0"
        empty = f" ({level['empty_answers']} empty)" if level["empty_answers"] else ""
        lines.append(
            f"| {level['concurrency']} | {level['completed']}/{level['requests']}{empty} "
            f"| {errors} "
            f"| {_fmt(level['ttft_ms']['p50'])} / {_fmt(level['ttft_ms']['p99'])} "
            f"| {_fmt(level['tpot_ms']['p50'])} | {_fmt(level['itl_ms']['p50'])} "
            f"| {_fmt(level['e2el_ms']['p50'])} / {_fmt(level['e2el_ms']['p99'])} "
            f"| {_fmt(level['request_throughput'], 3)} | {_fmt(level['output_throughput'])} "
            f"| {_fmt(level['goodput'], 3) if with_goodput else '–'} | {level['token_counting']} |"
        )
    return [*lines, ""]


def _ratio_table(ratios: list[dict[str, Any]]) -> list[str]:
    keys = [k for k in ratios[0] if k != "concurrency"]
    lines = [
        "## target / baseline",
        "",
        "| conc. | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for row in ratios:
        lines.append(
            f"| {row['concurrency']} | " + " | ".join(_fmt(row[k], 2) for k in keys) + " |"
        )
    return [*lines, ""]


def save_run(run: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """Write `<name>.png`, `<name>.md` and `<name>.json` (last, naming the files beside it);
    returns their paths."""
    from benchmarks.load.plot import plot_run  # matplotlib is only imported when plotting

    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot_run(run, out_dir / f"{run['name']}.png")
    md = out_dir / f"{run['name']}.md"
    md.write_text(summary_markdown(run), encoding="utf-8")
    run["files"] = {"json": f"{run['name']}.json", "png": png.name, "md": md.name}
    write_json(run, out_dir)
    return {kind: str(out_dir / name) for kind, name in run["files"].items()}
