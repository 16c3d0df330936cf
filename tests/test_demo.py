"""`puls demo`, the README's first command, on a small slice: ingest, serve, answer; run
again, the unchanged input is not ingested twice."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import DATA, RemoteServer, puls_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EVENTS = 40


def small_sample(directory: Path) -> tuple[set[str], str]:
    """The first events of a real export, and a `now` just before the earliest of them."""
    rows = json.loads((DATA / "paris-2025-ods.json").read_text("utf-8"))["results"][:EVENTS]
    directory.mkdir()
    (directory / "paris.json").write_text(json.dumps({"results": rows}), encoding="utf-8")
    first = min(datetime.fromisoformat(r["firstdate_begin"]) for r in rows)
    return {r["uid"] for r in rows}, (first - timedelta(days=1)).isoformat()


def ask(server: RemoteServer, now: str) -> list[dict]:
    body = {
        "model": "puls",
        "messages": [{"role": "user", "content": "Que faire à Paris ?"}],
        "puls": {"now": now},
    }
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    citations: list[dict] = response.json()["citations"]
    return citations


def test_demo_ingests_serves_and_skips_unchanged_input(tmp_path: Path) -> None:
    uids, now = small_sample(tmp_path / "sample")
    env = puls_env(tmp_path / "store")
    command = ("demo", "--data", str(tmp_path / "sample"))
    for run in ("first", "again"):
        server = RemoteServer(env, command=command)
        try:
            citations = ask(server, now)
        finally:
            server.stop()
        log = Path(server.log.name).read_text(errors="replace")
        assert citations and {c["uid"] for c in citations} <= uids
        inserted = f"inserted={EVENTS}" if run == "first" else "inserted=0"
        assert f"read={EVENTS} {inserted} updated=0" in log, log[-2000:]
