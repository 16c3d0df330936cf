"""Helpers for the memory/cache/profile tests: a private Redis server, a throwaway PostgreSQL
database, and the real app in-process on an ingested data dir, waited on `/readyz`."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from fastapi.testclient import TestClient

from ingest.settings import IngestSettings
from puls.settings import Settings
from retrieval.settings import RetrievalSettings
from serving.app import create_app
from serving.settings import ServingSettings
from tests.conftest import create_database, drop_database, free_port  # noqa: F401  (re-exported)

READY_TIMEOUT_S = 120
JAZZ = "Un concert de jazz à Paris en juin 2025 ?"
NOW = "2025-06-01T10:00:00+02:00"


class RedisServer:
    """`redis-server` of the test's own on a free port (no persistence); stop and start it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server") or "redis-server"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url, socket_timeout=0.5).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def postgres_database() -> Iterator[tuple[str, str]]:
    """(database name, SQLAlchemy URL) of a throwaway database, dropped afterwards."""
    name = f"puls_test_{uuid.uuid4().hex[:10]}"
    create_database(name)
    try:
        yield name, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        drop_database(name)


@contextmanager
def app_client(data_dir: Path, copy: bool = True, **serving: Any) -> Iterator[TestClient]:
    """The real app (e5, Milvus Lite, llama.cpp) on a private copy of `data_dir` (Milvus Lite
    locks its directory; other modules' servers use the shared one), ready to answer."""
    if copy:
        with tempfile.TemporaryDirectory(prefix="puls-mem-") as tmp:
            target = Path(tmp) / "data"
            shutil.copytree(data_dir, target)
            with app_client(target, copy=False, **serving) as client:
                yield client
        return
    settings = Settings(
        retrieval=RetrievalSettings(data_dir=data_dir),
        ingest=IngestSettings(),
        serving=ServingSettings(answer_max_tokens=8, **serving),
    )
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while client.get("/readyz").status_code != 200:
            assert client.app.state.warm_up_error is None, client.app.state.warm_up_error  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "app not ready"
            time.sleep(0.2)
        yield client


def ask(client: TestClient, content: str, **extra: Any) -> Any:
    """POST one question (plus `puls` options in `extra['puls']`, other body fields as is)."""
    puls = {"now": NOW, **extra.pop("puls", {})}
    body = {"model": "puls", "messages": [{"role": "user", "content": content}], "puls": puls}
    response = client.post("/v1/chat/completions", json={**body, **extra})
    assert response.status_code == 200, response.text
    settle(client)
    return response


def settle(client: TestClient) -> None:
    """Wait for the cache writes the last answer started (they run after the response)."""
    deadline = time.monotonic() + 10
    while client.app.state.chat.pending_cache_writes and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.02)


def cited(response: Any) -> list[str]:
    return [c["uid"] for c in response.json()["citations"]]
