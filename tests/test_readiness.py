"""Until warm-up succeeds the API says 503 in OpenAI's envelope; /healthz answers regardless."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ingest.settings import IngestSettings
from puls.settings import Settings
from retrieval.settings import RetrievalSettings
from serving.app import create_app
from serving.settings import ServingSettings
from tests.conftest import free_port

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
