"""Shared fixtures: a slice of the real bundled data, ingested once, and a real server process."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from serving.ray_start import free_port

os.environ["HF_HUB_OFFLINE"] = "1"

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data" / "openagenda"
PULS = [sys.executable, "-m", "puls"]
SERVER_START_TIMEOUT_S = 120
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@contextmanager
def loopback_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` served on a free loopback port in a thread; yields "http://127.0.0.1:PORT"."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def puls_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULS_")}
    env.update({"PULS_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", **extra})
    return env


def write_slice(target: Path) -> list[Path]:
    """Real rows from two layouts: Paris June 2025 (the jazz question) plus other months/themes."""
    target.mkdir(parents=True, exist_ok=True)
    with (DATA / "paris-2025-clean.csv").open(encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        fields = reader.fieldnames or []
    june = [r for r in rows if r["date_start"].startswith("2025-06")][:150]
    other = [r for r in rows if not r["date_start"].startswith("2025-06")][:100]
    clean = target / "paris-clean.csv"
    with clean.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(june + other)
    ods = json.loads((DATA / "paris-2025-ods.json").read_text(encoding="utf-8"))
    ods_path = target / "paris-ods.json"
    ods_path.write_text(json.dumps({"results": ods["results"][:80]}, ensure_ascii=False), "utf-8")
    return [clean, ods_path]


def run_puls(
    *args: str, env: dict[str, str], check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PULS, *args], env=env, capture_output=True, text=True, timeout=timeout, check=check,
        cwd=REPO,
    )  # fmt: skip


@pytest.fixture(scope="session")
def sample_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_slice(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="session")
def ingested(tmp_path_factory: pytest.TempPathFactory, sample_files: list[Path]) -> Path:
    """A data dir holding the slice, ingested by the real CLI (e5, Milvus Lite, SQLite)."""
    data_dir = tmp_path_factory.mktemp("puls-data")
    result = run_puls("ingest", *map(str, sample_files), "--json", env=puls_env(data_dir))
    report = json.loads(result.stdout)
    assert report["inserted"] > 200, report
    return data_dir


def ingested_uids(sample_files: list[Path]) -> set[str]:
    """The uids present in the slice, read straight from the files (not through Puls)."""
    with sample_files[0].open(encoding="utf-8") as f:
        uids = {row["id"] for row in csv.DictReader(f)}
    uids |= {e["uid"] for e in json.loads(sample_files[1].read_text("utf-8"))["results"]}
    return uids


class RemoteServer:
    """`puls serve` (or another serving command, e.g. `demo`) in its own process on a free
    port, ready when /readyz is 200."""

    def __init__(
        self,
        env: dict[str, str],
        ray: bool = False,
        command: tuple[str, ...] = ("serve",),
        start_timeout_s: float = SERVER_START_TIMEOUT_S,
    ) -> None:
        self.start_timeout_s = start_timeout_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # A file, not a pipe: nobody reads a pipe while the server runs, and a full one blocks it.
        self.log = tempfile.NamedTemporaryFile(prefix="puls-serve-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [*PULS, *command, "--port", str(self.port), "--ray" if ray else "--no-ray"],
            env=env,
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so stop() reaches Ray's helper processes too
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = Path(self.log.name).read_text(errors="replace")[-5000:]
                raise RuntimeError(f"puls exited with {self.process.returncode}:\n{output}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"puls not ready after {self.start_timeout_s} s")

    def terminate(self, timeout_s: float = 90) -> int:
        """SIGTERM `puls serve` alone, as a service manager or `timeout` would, and wait for
        it to exit; its exit code. `stop` then ends whatever it left."""
        self.process.terminate()
        return self.process.wait(timeout=timeout_s)

    def output(self) -> str:
        """What the server printed so far."""
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM the server's process group (graceful drain), SIGKILL it after 60 s."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def server(ingested: Path) -> Iterator[RemoteServer]:
    remote = RemoteServer(puls_env(ingested))
    yield remote
    remote.stop()


def create_database(name: str) -> None:
    """A database of the test's own on the machine's PostgreSQL."""
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def drop_database(name: str) -> None:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throwaway database on the machine's PostgreSQL, dropped afterwards."""
    name = f"puls_test_{uuid.uuid4().hex[:10]}"
    create_database(name)
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    drop_database(name)


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer BERT cross-encoder with random weights (tests/tiny_models.py)."""
    from tests.tiny_models import save_tiny_bert

    return save_tiny_bert(tmp_path_factory.mktemp("tiny-cross-encoder"), 16, num_labels=1)
