"""The intro's prompt is the question alone (ADR 0009). By default it is asked for once the
search found events; with `PULS_INTRO_DURING_SEARCH` it starts beside the search, a search
that finds nothing drops it, and an engine that fails meanwhile only matters when there are
events to introduce. The engine is a loopback server speaking OpenAI's streamed completions."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from puls.settings import Settings
from serving.answer import intro_prompt
from serving.app import create_app
from tests.conftest import loopback_server
from tests.conftest_api import metric_samples
from tests.test_readiness import settings_on_a_copy, wait_for_readyz

pytestmark = pytest.mark.integration

JAZZ = "Un concert de jazz à Paris en juin 2025 ?"
NOW = "2025-06-01T10:00:00+02:00"
NOTHING = "Un concert de jazz à Paris ?"
NOTHING_NOW = "2040-01-01T10:00:00+01:00"  # after every ingested event
WARM_UP_PROMPT = "Bonjour"  # what OpenAIHTTPLLM.warm_up generates from


class Engine:
    """What the loopback engine was asked; `fail_intros` answers intro prompts with a 500."""

    def __init__(self, fail_intros: bool = False) -> None:
        self.fail_intros = fail_intros
        self.prompts: list[str] = []
        self.lock = threading.Lock()

    def intros(self) -> list[str]:
        with self.lock:
            return [p for p in self.prompts if p != WARM_UP_PROMPT]


@contextmanager
def engine_server(engine: Engine) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self._send(200, "application/json", json.dumps({"data": [{"id": "gemma"}]}))

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with engine.lock:
                engine.prompts.append(body["prompt"])
            if engine.fail_intros and body["prompt"] != WARM_UP_PROMPT:
                self._send(500, "application/json", '{"error": {"message": "boom"}}')
                return
            chunks = [{"choices": [{"text": word, "finish_reason": None}]}
                      for word in (" des", " concerts.")]  # fmt: skip
            chunks[-1]["choices"][0]["finish_reason"] = "stop"
            usage = {"prompt_tokens": 90, "completion_tokens": 2, "total_tokens": 92}
            events = [*chunks, {"choices": [], "usage": usage}]
            stream = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
            self._send(200, "text/event-stream", stream)

        def _send(self, status: int, kind: str, text: str) -> None:
            payload = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    with loopback_server(Handler) as url:
        yield f"{url}/v1"


@pytest.fixture(scope="module")
def served(
    ingested: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Engine, TestClient, Settings]]:
    """One app over one engine for the module (a start-up takes ~30 s); each test resets
    what the engine was asked and how it answers, and sets the mode on the app's settings."""
    engine = Engine()
    with engine_server(engine) as url:
        settings = settings_on_a_copy(ingested, tmp_path_factory.mktemp("intro"), llm_url=url)
        with TestClient(create_app(settings)) as client:
            wait_for_readyz(client, lambda r: r.status_code == 200)
            yield engine, client, settings


@pytest.fixture
def engine(served: tuple[Engine, TestClient, Settings]) -> Engine:
    engine = served[0]
    with engine.lock:
        engine.prompts.clear()
    engine.fail_intros = False
    return engine


@pytest.fixture(params=[True], ids=["during-search"])
def client(served: tuple[Engine, TestClient, Settings], engine: Engine,
           request: pytest.FixtureRequest) -> Iterator[TestClient]:  # fmt: skip
    """The app, asking for the intro during the search unless a test says otherwise."""
    settings = served[2].serving
    settings.intro_during_search = request.param
    yield served[1]
    settings.intro_during_search = False


def ask(client: TestClient, question: str, now: str) -> dict[str, object]:
    r = client.post(
        "/v1/chat/completions",
        json={"model": "puls", "messages": [{"role": "user", "content": question}],
              "puls": {"now": now}},
    )  # fmt: skip
    return {"status": r.status_code, **r.json()}


def dropped(client: TestClient) -> float:
    return metric_samples(client.get("/metrics").text)["puls_dropped_intros_total{}"]


def test_the_engine_gets_the_question_alone(engine: Engine, client: TestClient) -> None:
    before = dropped(client)
    answer = ask(client, JAZZ, NOW)
    assert answer["status"] == 200 and answer["citations"]
    assert engine.intros() == [intro_prompt(JAZZ)]
    assert answer["choices"][0]["message"]["content"].startswith("Voici des concerts.")
    assert dropped(client) == before


def test_a_search_that_finds_nothing_drops_the_intro_it_started(
    engine: Engine, client: TestClient
) -> None:
    """The intro was started before the search ended, then dropped: the answer is the fixed
    sentence, without the model's text. (Whether the engine saw the request before it was
    dropped depends on which of the two was quicker.)"""
    before = dropped(client)
    answer = ask(client, NOTHING, NOTHING_NOW)
    assert answer["status"] == 200 and answer["citations"] == []
    content = answer["choices"][0]["message"]["content"]
    assert "aucun événement" in content and "concerts." not in content
    assert set(engine.intros()) <= {intro_prompt(NOTHING)}
    assert dropped(client) == before + 1


def test_a_failing_engine_only_matters_when_there_are_events(
    engine: Engine, client: TestClient
) -> None:
    engine.fail_intros = True
    nothing = ask(client, NOTHING, NOTHING_NOW)
    found = ask(client, JAZZ, NOW)
    assert nothing["status"] == 200 and nothing["citations"] == []
    assert found["status"] >= 500 and found["error"]["type"]  # OpenAI's envelope
    assert intro_prompt(JAZZ) in engine.intros()


@pytest.mark.parametrize("client", [False], ids=["after-search"], indirect=True)
def test_by_default_the_engine_is_asked_only_once_events_are_found(
    engine: Engine, client: TestClient
) -> None:
    before = dropped(client)
    nothing = ask(client, NOTHING, NOTHING_NOW)
    assert nothing["status"] == 200 and nothing["citations"] == []
    assert engine.intros() == []
    found = ask(client, JAZZ, NOW)
    assert found["status"] == 200 and found["citations"]
    assert engine.intros() == [intro_prompt(JAZZ)]
    assert dropped(client) == before
