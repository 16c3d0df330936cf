"""Until warm-up succeeds the API says 503 in OpenAI's envelope; /healthz answers regardless."""

from __future__ import annotations

import gc
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from ingest.settings import IngestSettings
from puls.settings import Settings
from retrieval.settings import RetrievalSettings
from serving.app import create_app
from serving.settings import ServingSettings
from tests.conftest import free_port
from tests.conftest_api import llama_cpp_server
from tests.conftest_memory import READY_TIMEOUT_S, app_client

pytestmark = pytest.mark.integration


def test_not_ready_while_the_engine_is_unreachable(tmp_path: Path) -> None:
    dead_engine = f"http://127.0.0.1:{free_port()}/v1"
    settings = Settings(
        retrieval=RetrievalSettings(data_dir=tmp_path),
        ingest=IngestSettings(),
        serving=ServingSettings(llm_url=dead_engine),
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"]["type"] == "service_unavailable"
        chat = client.post(
            "/v1/chat/completions",
            json={"model": "puls", "messages": [{"role": "user", "content": "jazz"}]},
        )
        assert chat.status_code == 503 and chat.json()["error"]["code"] == "warming_up"
        assert chat.headers["x-request-id"]


def test_ready_means_the_start_up_heap_is_frozen(ingested: Path) -> None:
    """What warm-up loaded is out of the cyclic GC's reach (a full pass over it took ~80 ms)."""
    gc.unfreeze()  # this test process may hold another app's frozen objects
    with app_client(ingested) as client:
        assert client.get("/readyz").status_code == 200
        assert gc.get_freeze_count() > 100_000


def settings_on_a_copy(ingested: Path, tmp_path: Path, **serving: str) -> Settings:
    """Settings over a copy of the ingested data dir (one process per Milvus Lite dir)."""
    data_dir = tmp_path / "data"
    shutil.copytree(ingested, data_dir)
    return Settings(
        retrieval=RetrievalSettings(data_dir=data_dir),
        ingest=IngestSettings(),
        serving=ServingSettings(llm_model="gemma", answer_max_tokens=8, **serving),
    )


def wait_for_readyz(client: TestClient, done: Callable[[httpx.Response], bool]) -> httpx.Response:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not done(ready := client.get("/readyz")):
        assert time.monotonic() < deadline, ready.text
        time.sleep(0.2)
    return ready


def test_warm_up_retries_until_a_late_engine_is_up(ingested: Path, tmp_path: Path) -> None:
    """vLLM loads for minutes beside the API pod: the API is not ready until the engine
    answers, says why meanwhile, and needs no restart once it does."""
    port = free_port()
    settings = settings_on_a_copy(ingested, tmp_path, llm_url=f"http://127.0.0.1:{port}/v1")
    with TestClient(create_app(settings)) as client:
        failed = wait_for_readyz(client, lambda r: r.status_code == 503 and "failed" in r.text)
        error = failed.json()["error"]
        assert error["code"] == "warm_up_failed"
        assert "retrying" in error["message"] and f"127.0.0.1:{port}" in error["message"]

        with llama_cpp_server(port):
            wait_for_readyz(client, lambda r: r.status_code == 200)
            answer = client.post(
                "/v1/chat/completions",
                json={"model": "puls", "messages": [{"role": "user", "content": "jazz"}]},
            )
            assert answer.status_code == 200, answer.text


def test_a_down_large_engine_does_not_hold_readiness(ingested: Path) -> None:
    """The router falls back to the small model while the large one is down, so readiness
    waits for the small one only (app_client fails on any error of that part)."""
    dead_large = f"http://127.0.0.1:{free_port()}/v1"
    with app_client(ingested, llm_large_url=dead_large) as client:
        assert client.get("/readyz").status_code == 200
        assert not client.app.state.warm_up_error  # type: ignore[attr-defined]


def test_on_ray_serve_the_app_starts_only_once_warm(ingested: Path, tmp_path: Path) -> None:
    """Serve routes requests to a replica as soon as its lifespan has started, and has no
    readiness probe: with `wait_for_warm_up` that start-up ends only once the app is ready."""
    settings = settings_on_a_copy(ingested, tmp_path)
    with TestClient(create_app(settings, wait_for_warm_up=True)) as client:
        assert client.app.state.ready  # type: ignore[attr-defined]
        assert client.get("/readyz").status_code == 200
