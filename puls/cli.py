"""`puls`: ingest, search, serve, demo. Errors are one line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

import typer

from puls.bench_cli import bench_app
from puls.memory_cli import memory_app
from puls.settings import Settings, load_settings

if TYPE_CHECKING:
    from ingest.pipeline import IngestReport
    from ingest.staging import StagingStore
    from retrieval import Retriever

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False
)
app.add_typer(bench_app, name="bench")
app.add_typer(memory_app, name="memory")
PARIS = ZoneInfo("Europe/Paris")
BUNDLED_DATA = Path(__file__).resolve().parent.parent / "data" / "openagenda"


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"puls: error: {message}", err=True)
    raise typer.Exit(code)


def _parse_now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(PARIS)
    try:
        now = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 datetime", param_hint="--now"
        ) from None
    return now if now.tzinfo else now.replace(tzinfo=PARIS)


def _source_files(paths: list[Path]) -> list[Path]:
    """Files as given; a directory stands for the .json and .csv files in it."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in {".json", ".csv"}))
        else:
            files.append(path)
    return files


@contextmanager
def _ingest_stores(settings: Settings) -> Iterator[tuple[Retriever, StagingStore]]:
    """The retrieval stores and the staging tables an ingest writes, closed afterwards. A
    vector store with an older schema is rebuilt (the run then re-embeds stored events).
    The embedder gets every core unless PULS_INGEST_EMBEDDER_THREADS says otherwise."""
    from ingest.staging import StagingStore
    from retrieval import close_retriever, open_retriever

    threads = settings.ingest.embedder_threads or os.cpu_count() or 1
    retrieval = settings.retrieval.model_copy(update={"embedder_threads": threads})
    retriever = open_retriever(retrieval, migrate=True)
    staging = StagingStore(settings.retrieval.resolved_database_url())
    try:
        yield retriever, staging
    finally:
        staging.close()
        close_retriever(retriever)


def _report_dict(report: IngestReport) -> dict[str, Any]:
    for error in report.errors:
        typer.echo(f"puls: error: {error}", err=True)
    return {**report.as_dict(), "summary": report.summary()}


def run_ingest(
    settings: Settings, paths: list[Path], quiet: bool, mapping: Path | None = None
) -> dict[str, Any]:
    from ingest.mapping import MappingError, load_mapping
    from ingest.pipeline import ingest_paths

    try:
        chosen = load_mapping(mapping) if mapping else None
    except MappingError as exc:
        _fail(str(exc), 2)
    with _ingest_stores(settings) as (retriever, staging):
        report = ingest_paths(
            _source_files(paths),
            retriever.embedder,
            retriever.vectors,
            retriever.events,
            batch_size=settings.ingest.batch_size,
            mapping=chosen,
            progress=not quiet and sys.stderr.isatty(),
            staging=staging,
        )
    return _report_dict(report)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Export files (.json/.csv) or directories.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    mapping: Annotated[
        Path | None, typer.Option(help="Column mapping YAML for a custom layout.")
    ] = None,
) -> None:
    """Load event exports into the stores; unchanged events are skipped."""
    _print_ingest(run_ingest(load_settings(), paths, quiet=as_json, mapping=mapping), as_json)


def _print_ingest(report: dict[str, Any], as_json: bool) -> None:
    """One JSON object, or the readable summary; a non-zero exit if anything failed whole."""
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, default=str))
    else:
        typer.echo(report["summary"])
    if report["errors"]:
        raise typer.Exit(1)


@app.command("ingest-api")
def ingest_api(
    agenda: Annotated[str, typer.Argument(help="OpenAgenda agenda uid.")],
    key: Annotated[str | None, typer.Option(help="Default PULS_INGEST_OPENAGENDA_KEY.")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only events updated since (ISO). Default: the stored watermark."),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Ignore the stored watermark: fetch every event.")
    ] = False,
    base_url: Annotated[str | None, typer.Option(help="Default: OpenAgenda API v2.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Ingest an agenda from the OpenAgenda API v2. Incremental: without --since, only events
    updated since the newest `updatedAt` a previous run of this agenda ingested (its
    watermark, reported as `watermark` in --json)."""
    from ingest.openagenda_api import OpenAgendaClient, OpenAgendaError
    from ingest.pipeline import ingest_agenda

    settings = load_settings()
    api_key = key or settings.ingest.openagenda_key
    if not api_key:
        _fail("an API key is needed: --key or PULS_INGEST_OPENAGENDA_KEY", 2)
    updated_since = _parse_now(since) if since else None
    client = OpenAgendaClient(str(api_key), base_url or settings.ingest.openagenda_base_url)
    try:
        with _ingest_stores(settings) as (retriever, staging):
            report = ingest_agenda(
                client,
                agenda,
                retriever.embedder,
                retriever.vectors,
                retriever.events,
                updated_since=updated_since,
                staging=staging,
                batch_size=settings.ingest.batch_size,
                progress=not as_json and sys.stderr.isatty(),
                full=full,
            )
    except OpenAgendaError as exc:
        _fail(str(exc))
    finally:
        client.close()
    _print_ingest(_report_dict(report), as_json)


@app.command()
def reindex(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Re-embed stored events whose vectors are missing or stale: after an upgrade that
    changed the vector store's schema, or a change of PULS_CHUNK_* settings."""
    from ingest.pipeline import reindex as reindex_events

    settings = load_settings()
    with _ingest_stores(settings) as (retriever, _staging):
        report = reindex_events(
            retriever.embedder,
            retriever.vectors,
            retriever.events,
            batch_size=settings.ingest.batch_size,
            progress=not as_json and sys.stderr.isatty(),
        )
    _print_ingest(_report_dict(report), as_json)


def _open_retriever(settings: Settings) -> Retriever:
    """The retriever, or a one-line error when its vector store needs rebuilding or a
    backend setting lacks its model."""
    from retrieval import open_retriever
    from retrieval.build import ConfigError
    from retrieval.vector_store import VectorStoreSchemaError

    try:
        return open_retriever(settings.retrieval)
    except (VectorStoreSchemaError, ConfigError) as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


def _check_stores(settings: Settings) -> None:
    """One line and exit when the workers could only fail (an old vector store, a backend
    without its model), instead of a traceback per worker."""
    from retrieval.build import ConfigError, check_stores
    from retrieval.vector_store import VectorStoreSchemaError

    try:
        check_stores(settings.retrieval)
    except (VectorStoreSchemaError, ConfigError) as exc:
        _fail(str(exc))


def _check_stores_apart() -> None:
    """`puls check` in a child process, before Ray starts: opening Milvus Lite here would
    leave its gRPC threads running in the process from which Ray forks its GCS and raylet,
    and starts then hung now and then (serving/ray_start.py)."""
    checked = subprocess.run(
        [sys.executable, "-m", "puls", "check"], capture_output=True, text=True, check=False
    )
    if checked.returncode != 0:
        lines = checked.stderr.strip().splitlines()
        typer.echo(lines[-1] if lines else "puls: error: puls check failed", err=True)
        raise typer.Exit(checked.returncode)


@app.command()
def check() -> None:
    """Check the settings and the stores as `puls serve` does before starting: one line and
    exit code 1 when a worker could only fail."""
    _check_stores(load_settings())
    typer.echo("ok")


@app.command()
def search(
    text: Annotated[str, typer.Argument(help="A French request, e.g. 'concert de jazz à Paris'.")],
    now: Annotated[str | None, typer.Option(help="Reference time, ISO 8601.")] = None,
    lat: Annotated[float | None, typer.Option(min=-90, max=90)] = None,
    lon: Annotated[float | None, typer.Option(min=-180, max=180)] = None,
    top_k: Annotated[int | None, typer.Option(min=1, max=50)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Search the indexed events and show how the request was understood."""
    from retrieval import close_retriever

    if (lat is None) != (lon is None):
        raise typer.BadParameter("give both --lat and --lon", param_hint="--lat/--lon")
    reference = _parse_now(now)
    retriever = _open_retriever(load_settings())
    try:
        result = retriever.search(text, reference, (lat, lon) if lat is not None else None, top_k)  # type: ignore[arg-type]
    finally:
        close_retriever(retriever)
    parsed = result.parsed
    parse = {
        "window": {
            "start": parsed.window.start,
            "end": parsed.window.end,
            "label": parsed.window.label,
        },
        "cities": parsed.cities,
        "areas": parsed.areas,
        "departments": parsed.departments,
        "near": parsed.near.__dict__ if parsed.near else None,
        "terms": parsed.terms,
        "notes": parsed.notes,
    }
    rows = [
        {
            "uid": s.event.uid,
            "title": s.event.title,
            "start": s.event.start.astimezone(PARIS),
            "end": s.event.end.astimezone(PARIS),
            "city": s.event.city,
            "url": s.event.url,
            "score": round(s.score, 4),
            "dense": round(s.dense, 4),
            "bm25": round(s.bm25, 4),
            "title_match": round(s.lexical, 4),
            "features": {k: round(v, 4) for k, v in s.features.items()},
            "distance_km": None if s.distance_km is None else round(s.distance_km, 2),
        }
        for s in result.events
    ]
    if as_json:
        typer.echo(
            json.dumps(
                {"query": text, "parse": parse, "relaxed": result.relaxed, "results": rows},
                ensure_ascii=False,
                default=str,
            )
        )
        return
    typer.echo(
        f"when: {parsed.window.label}  cities: {', '.join(parsed.cities) or '-'}  "
        f"terms: {' '.join(parsed.terms) or '-'}"
    )
    for note in (*parsed.notes, *result.relaxed):
        typer.echo(f"note: {note}")
    for i, row in enumerate(rows, 1):
        typer.echo(
            f"{i:2}. {row['score']:.3f}  {row['title']}  "
            f"({row['start']:%Y-%m-%d %H:%M}, {row['city']})  uid={row['uid']}"
        )
    if not rows:
        typer.echo("no event found")


eval_app = typer.Typer(help="Measure quality on graded query sets.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@eval_app.command("retrieval")
def eval_retrieval(
    path: Annotated[Path, typer.Argument(help="JSON lines: id, query, now, relevant, location?")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON report here.")] = None,
) -> None:
    """NDCG@10, Recall@10 and P@5 of the hybrid search, with BM25-only and dense-only baselines."""
    from retrieval import close_retriever
    from retrieval.evaluate import EvalSetError, evaluate, load_queries

    try:
        queries = load_queries(path)
    except EvalSetError as exc:
        _fail(str(exc), 2)
    retriever = _open_retriever(load_settings())
    try:
        report = evaluate(retriever, queries)
    finally:
        close_retriever(retriever)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    typer.echo(f"{'':12}{'ndcg@10':>9}{'recall@10':>11}{'p@5':>7}   (n={report['n']})")
    rows = {"hybrid": report["metrics"], **report["baselines"]}
    for name, m in rows.items():
        typer.echo(f"{name:12}{m['ndcg@10']:>9.3f}{m['recall@10']:>11.3f}{m['p@5']:>7.3f}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default PULS_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default PULS_PORT).")] = None,
    ray: Annotated[
        bool, typer.Option("--ray/--no-ray", help="Run the Ray Serve graph, or one process.")
    ] = True,
) -> None:
    """Run the OpenAI-compatible API: on Ray Serve by default, in one process with --no-ray."""
    settings = load_settings()
    if ray:
        _check_stores_apart()
    else:
        _check_stores(settings)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    bind_host, bind_port = host or settings.serving.host, port or settings.serving.port
    if ray:
        from retrieval.build import ConfigError
        from serving.ray_start import set_ray_serve_env

        try:
            set_ray_serve_env(settings.serving.ray_haproxy, bind_port)  # before ray.serve
            from serving.deployments import run

            run(settings, bind_host, bind_port)
        except ConfigError as exc:  # raised before Ray starts
            _fail(str(exc))
        return
    import uvicorn

    from serving.app import create_app

    uvicorn.run(create_app(settings), host=bind_host, port=bind_port, timeout_graceful_shutdown=30)


@app.command()
def demo(
    data: Annotated[Path, typer.Option(help="Directory of sample exports.")] = BUNDLED_DATA,
    port: Annotated[int | None, typer.Option(help="Port (default PULS_PORT).")] = None,
    ray: Annotated[
        bool, typer.Option("--ray/--no-ray", help="Run the Ray Serve graph, or one process.")
    ] = True,
) -> None:
    """Ingest the bundled OpenAgenda sample (skipped when unchanged), then serve it."""
    settings = load_settings()
    if not data.is_dir():
        _fail(f"{data}: sample data directory not found")
    typer.echo(f"Ingesting {data} into {settings.retrieval.data_dir} ...")
    report = run_ingest(settings, [data], quiet=False)
    typer.echo(
        f"read={report['read']} inserted={report['inserted']} updated={report['updated']} "
        f"unchanged={report['unchanged']} rejected={report['rejected']} merged={report['merged']}"
    )
    bound = port or settings.serving.port
    base = f"http://{settings.serving.host}:{bound}"
    typer.echo(
        f"\nPuls is starting on {base} (ready when {base}/readyz says so). Try:\n"
        f"  curl -s {base}/v1/chat/completions -H 'Content-Type: application/json' -d "
        '\'{"model": "puls", "messages": [{"role": "user", "content": '
        '"Un concert de jazz à Paris en juin 2025 ?"}], '
        '"puls": {"now": "2025-06-01T10:00:00+02:00"}}\'\n'
        f'  or the openai SDK with base_url="{base}/v1" (see README.md).\n'
    )
    # `puls serve` in this process's place: the ingest left threads here (Milvus Lite's gRPC
    # server, e5) that must not run when Ray forks its GCS and raylet (serving/ray_start.py)
    sys.stdout.flush()
    mode = "--ray" if ray else "--no-ray"
    os.execv(sys.executable, [sys.executable, "-m", "puls", "serve", "--port", str(bound), mode])
