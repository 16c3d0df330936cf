"""`puls memory`: long-term memory jobs (run by the k8s CronJob `puls-memory-consolidate`)."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated

import typer

from puls.settings import Settings, load_settings

if TYPE_CHECKING:
    from serving.memory.consolidate import ConsolidationReport

memory_app = typer.Typer(help="Long-term memory jobs.", no_args_is_help=True)


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"puls: error: {message}", err=True)
    raise typer.Exit(code)


async def run_consolidation(
    settings: Settings, top: int | None = None, min_count: int | None = None
) -> ConsolidationReport:
    """Open the session store (Redis) and the profile database, consolidate, close them.

    Raises `RuntimeError` if Redis is unset or fails (sessions would look empty), a Redis
    error if it cannot be reached, `StoreUnavailable` if the database is down."""
    from serving.memory.consolidate import MIN_COUNT, TOP, consolidate
    from serving.memory.kv import Guarded, RedisKV
    from serving.memory.sessions import SessionMemory
    from serving.profiles.store import ProfileStore

    serving = settings.serving
    url = serving.memory_redis_url or serving.redis_url
    if not url:
        raise RuntimeError(
            "sessions live inside each API process without Redis: "
            "set PULS_MEMORY_REDIS_URL or PULS_REDIS_URL"
        )
    kv = RedisKV(url)
    profiles = ProfileStore(
        serving.profile_database_url or settings.retrieval.resolved_database_url()
    )
    try:
        await kv.check_health()
        guard = Guarded(kv)
        sessions = SessionMemory(
            guard, serving.memory_key_prefix, serving.session_ttl_s, serving.session_max_turns
        )
        report = await consolidate(sessions, profiles, top or TOP, min_count or MIN_COUNT)
        if not guard.available:  # went down mid-run: some users were read as sessionless
            raise RuntimeError("the session store failed during consolidation")
        return report
    finally:
        await kv.aclose()
        profiles.close()


@memory_app.command("consolidate")
def consolidate_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    top: Annotated[
        int | None, typer.Option(min=1, help="Most cities/themes added per run [3].")
    ] = None,
    min_count: Annotated[
        int | None, typer.Option(min=1, help="Answers that must name a city/theme [2].")
    ] = None,
) -> None:
    """Count the cities and themes of opted-in users' live sessions into their profiles.

    Idempotent: a second run over the same sessions changes nothing. Users without a
    profile are skipped (nothing is created for them)."""
    try:
        report = asyncio.run(run_consolidation(load_settings(), top, min_count))
    except Exception as exc:  # Redis or the database down: one line and exit 1, no traceback
        _fail(f"{type(exc).__name__}: {exc}")
    if as_json:
        typer.echo(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        typer.echo(report.summary())
