"""Until warm-up succeeds the API says 503 in OpenAI's envelope; /healthz answers regardless."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ingest.settings import IngestSettings
from puls.settings import Settings
from retrieval.settings import RetrievalSettings
from serving.app import create_app
from serving.settings import ServingSettings
from tests.conftest import free_port
from tests.conftest_memory import app_client

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
