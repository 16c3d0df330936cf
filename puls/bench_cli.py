"""`puls bench`: load benchmarks against any OpenAI-compatible endpoint (see benchmarks/load).

Results go to benchmarks/results/ as `<name>.json` (machine, commit, settings, metrics),
`<name>.png` and `<name>.md`. A run with failed requests still writes its files, then exits 1.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

bench_app = typer.Typer(
    add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False
)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"puls: error: {message}", err=True)
    raise typer.Exit(code)


def _report_failures(levels: dict[str, Any]) -> None:
    """Loud, on stderr: every failed request of every endpoint, by kind."""
    failed = False
    for name, endpoint in levels.items():
        for level in endpoint["levels"]:
            if level["failed"]:
                failed = True
                kinds = ", ".join(f"{k}={v}" for k, v in level["errors"].items())
                typer.echo(
                    f"puls: error: {name} at concurrency {level['concurrency']}: "
                    f"{level['failed']} of {level['requests']} requests failed ({kinds})",
                    err=True,
                )
    if failed:
        raise typer.Exit(1)


@bench_app.command()
def load(
    url: Annotated[str, typer.Option(help="Endpoint under test: server root, /v1 or full URL.")],
    baseline: Annotated[
        str | None, typer.Option(help="Second endpoint (e.g. the raw engine), same schedule.")
    ] = None,
    concurrency: Annotated[str, typer.Option(help="Levels, e.g. 1,2,4,8,16,32.")] = "1,2,4",
    requests: Annotated[
        int | None, typer.Option(min=1, help="Requests per level (default 16 without --duration).")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(min=0.1, help="Seconds per level instead of a count.")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(min=0.001, help="Poisson arrivals (req/s); unset: all at once.")
    ] = None,
    warmup: Annotated[int, typer.Option(min=0, help="Unmeasured requests per endpoint.")] = 1,
    max_tokens: Annotated[int, typer.Option(min=1, help="max_tokens of every request.")] = 60,
    slo: Annotated[
        str | None, typer.Option(help="Goodput SLOs, e.g. ttft_ms=500,tpot_ms=50,e2e_ms=3000.")
    ] = None,
    model: Annotated[str, typer.Option(help="`model` sent to --url.")] = "puls",
    baseline_model: Annotated[
        str | None, typer.Option(help="`model` sent to --baseline (default: --model).")
    ] = None,
    baseline_extension: Annotated[
        bool, typer.Option(help="Also send the `puls` fields to the baseline.")
    ] = False,
    prompts: Annotated[Path | None, typer.Option(help="JSON Lines prompt file.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the Poisson arrivals.")] = 0,
    timeout: Annotated[float, typer.Option(min=1, help="Read timeout per request (s).")] = 300.0,
    label: Annotated[str | None, typer.Option(help="Word in the result file names.")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Default benchmarks/results/.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run JSON.")] = False,
) -> None:
    """Sweep concurrency levels: TTFT, TPOT, ITL, E2E, throughput, goodput (vLLM conventions)."""
    from benchmarks.load import (
        DEFAULT_PROMPTS,
        RESULTS_DIR,
        ConfigError,
        Endpoint,
        LoadConfig,
        chat_url,
        load_prompts,
        run_sweep,
    )
    from benchmarks.load.options import parse_concurrency, parse_slo
    from benchmarks.load.report import REPO, envelope, save_run, summary_markdown

    try:
        config = LoadConfig(
            target=Endpoint("target", chat_url(url), model),
            baseline=Endpoint(
                "baseline", chat_url(baseline), baseline_model or model, baseline_extension
            )
            if baseline
            else None,
            prompts=load_prompts(prompts or DEFAULT_PROMPTS),
            prompts_file=str(prompts or DEFAULT_PROMPTS.relative_to(REPO)),
            concurrency=parse_concurrency(concurrency),
            requests=requests if requests or duration else 16,
            duration_s=duration,
            rate=rate,
            warmup=warmup,
            max_tokens=max_tokens,
            seed=seed,
            slo_ms=parse_slo(slo),
            read_timeout_s=timeout,
        )
    except ConfigError as exc:
        _fail(str(exc), 2)
    run = {**envelope("load", label), **asyncio.run(run_sweep(config))}
    files = save_run(run, out_dir or RESULTS_DIR)
    if as_json:
        typer.echo(json.dumps(run, ensure_ascii=False))
    else:
        typer.echo(summary_markdown(run))
        typer.echo("written: " + ", ".join(files.values()))
    _report_failures(run["endpoints"])


@bench_app.command()
def soak(
    url: Annotated[str, typer.Option(help="Loopback endpoint: server root, /v1 or full URL.")],
    streams: Annotated[int, typer.Option(min=1, help="Concurrent streams, all at once.")] = 1000,
    max_seconds: Annotated[float, typer.Option(min=1, help="Bound; then cancel the rest.")] = 120,
    max_tokens: Annotated[int, typer.Option(min=1)] = 8,
    watch_after: Annotated[
        float, typer.Option(min=0, help="Seconds the server is watched after the bound.")
    ] = 20,
    model: Annotated[str, typer.Option(help="`model` sent.")] = "puls",
    server_pid: Annotated[
        int | None, typer.Option(help="Server process (default: the one on the URL's port).")
    ] = None,
    prompts: Annotated[Path | None, typer.Option(help="JSON Lines prompt file.")] = None,
    label: Annotated[str | None, typer.Option(help="Word in the result file name.")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Default benchmarks/results/.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the soak JSON.")] = False,
) -> None:
    """Open many streams at once for a bounded time; report errors and server memory."""
    from benchmarks.load import (
        DEFAULT_PROMPTS,
        RESULTS_DIR,
        ConfigError,
        Endpoint,
        SoakConfig,
        chat_url,
        load_prompts,
        run_soak,
    )
    from benchmarks.load.report import envelope, write_json

    try:
        config = SoakConfig(
            endpoint=Endpoint("target", chat_url(url), model),
            prompts=load_prompts(prompts or DEFAULT_PROMPTS),
            streams=streams,
            bound_s=max_seconds,
            max_tokens=max_tokens,
            server_pid=server_pid,
            watch_after_s=watch_after,
        )
    except ConfigError as exc:
        _fail(str(exc), 2)
    run = {**envelope("soak", label), **asyncio.run(run_soak(config))}
    path = write_json(run, out_dir or RESULTS_DIR)
    if as_json:
        typer.echo(json.dumps(run, ensure_ascii=False))
    else:
        m, server = run["metrics_of_finished"], run["server"]
        typer.echo(
            f"{streams} streams, {run['elapsed_s']} s: completed={m['completed']} "
            f"failed={m['failed']} {m['errors']} timed_out={run['timed_out']} "
            f"server rss={server.get('rss_mib')} alive={server['alive_after']} "
            f"health={server['health_after']}\nwritten: {path}"
        )
    if run["server"]["alive_after"] is False:
        _fail("the server did not survive the soak")
