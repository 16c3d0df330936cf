"""The optional LLM parse refiner (retrieval/refine.py).

The gpu profile's Llama 3.1 on vLLM cannot run here, so most tests talk to a loopback server
speaking OpenAI's chat-completions protocol with a scripted answer (it records what it was
asked). One test runs the refiner against the real llama.cpp server, whose grammar-constrained
`response_format` makes even the 270M base model answer valid JSON under the schema.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from retrieval import RetrievalSettings
from retrieval.build import ConfigError, open_refiner
from retrieval.query import parse_query
from retrieval.refine import LLMParseRefiner
from tests.conftest import free_port, loopback_server, puls_env, run_puls

pytestmark = pytest.mark.unit
PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2025, 6, 4, 15, 30, tzinfo=PARIS)
CITIES = ["Paris", "Valence", "Romans-sur-Isère"]
UNAVAILABLE = "affinage LLM indisponible"


class ScriptedModel:
    """What the loopback server answers: a JSON content, a status, or a delay."""

    def __init__(self) -> None:
        self.content: str = "{}"
        self.status = 200
        self.delay_s = 0.0
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []

    def answer(self, body: dict) -> tuple[int, dict]:
        time.sleep(self.delay_s)
        if self.status != 200:
            return self.status, {"error": {"message": "overloaded", "type": "server_error"}}
        message = {"role": "assistant", "content": self.content}
        return 200, {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70},
        }


@pytest.fixture
def model() -> Iterator[tuple[ScriptedModel, str]]:
    scripted = ScriptedModel()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            scripted.requests.append(body)
            scripted.headers.append(dict(self.headers))
            status, payload = scripted.answer(body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    with loopback_server(Handler) as url:
        yield scripted, f"{url}/v1"


def answer(**fields: object) -> str:
    return json.dumps({"themes": [], "start_date": None, "end_date": None, "city": None} | fields)


def test_the_model_fills_what_the_parser_missed(model: tuple[ScriptedModel, str]) -> None:
    scripted, url = model
    scripted.content = answer(
        themes=["spectacle enfants", "atelier", "spectacles"],
        start_date="2025-06-07",
        end_date="2025-06-08",
        city="valence",
    )
    refiner = LLMParseRefiner(url, "llama-3.1-8b", api_key="secret")
    parsed = parse_query("un truc sympa pour les gamins", NOW, CITIES)
    assert parsed.window.end is None and not parsed.cities
    refined = refiner.refine(parsed, CITIES)
    assert refined.cities == ("Valence",)
    assert refined.window.start == datetime(2025, 6, 7, tzinfo=PARIS)
    assert refined.window.end == datetime(2025, 6, 9, tzinfo=PARIS)
    assert refined.terms[: len(parsed.terms)] == parsed.terms
    assert refined.terms[len(parsed.terms) :] == ("spectacl", "enfant", "ateli")  # once each
    assert any(n.startswith("LLM : thèmes ajoutés") for n in refined.notes)
    request = scripted.requests[0]
    assert request["model"] == "llama-3.1-8b" and request["temperature"] == 0
    schema = request["response_format"]["json_schema"]["schema"]
    assert request["response_format"]["type"] == "json_schema"
    assert set(schema["properties"]) == {"themes", "start_date", "end_date", "city"}
    assert "un truc sympa pour les gamins" in request["messages"][-1]["content"]
    assert scripted.headers[0]["Authorization"] == "Bearer secret"
    refiner.close()


def test_what_the_parser_found_is_kept(model: tuple[ScriptedModel, str]) -> None:
    scripted, url = model
    scripted.content = answer(
        themes=["jazz", "blues", "swing", "soul", "funk"],
        start_date="2025-07-01",
        end_date="2025-07-31",
        city="Valence",
    )
    refiner = LLMParseRefiner(url, "m", max_terms=2)
    parsed = parse_query("un concert de jazz à Paris ce soir", NOW, CITIES)
    refined = refiner.refine(parsed, CITIES)
    assert refined.window == parsed.window and refined.cities == ("Paris",)
    assert refined.terms == (*parsed.terms, "blu", "swing")  # jazz was there; two at most


@pytest.mark.parametrize(
    "fields",
    [
        {"start_date": "2027-06-01", "end_date": "2027-06-02"},  # two years ahead
        {"start_date": "2025-06-10", "end_date": "2025-06-09"},  # ends before it starts
        {"start_date": "2025-01-01", "end_date": "2025-01-31"},  # already over
        {"city": "Atlantis"},  # no such commune
    ],
)
def test_implausible_answers_change_nothing(model: tuple[ScriptedModel, str], fields: dict) -> None:
    scripted, url = model
    scripted.content = answer(**fields)
    parsed = parse_query("une sortie sympa", NOW, CITIES)
    refined = LLMParseRefiner(url, "m").refine(parsed, CITIES)
    assert replace(refined, notes=parsed.notes) == parsed
    assert ("city" in fields) == any("lieu inconnu ignoré" in n for n in refined.notes)


@pytest.mark.parametrize("failure", ["status", "not json", "wrong shape", "slow", "down"])
def test_failures_fall_back_to_the_deterministic_parse(
    model: tuple[ScriptedModel, str], failure: str
) -> None:
    scripted, url = model
    scripted.content = answer(themes=["jazz"])
    if failure == "status":
        scripted.status = 503
    elif failure == "not json":
        scripted.content = "Voici les thèmes : jazz"
    elif failure == "wrong shape":
        scripted.content = json.dumps({"themes": "jazz", "city": 3})
    elif failure == "slow":
        scripted.delay_s = 1.0
    else:
        url = f"http://127.0.0.1:{free_port()}/v1"
    parsed = parse_query("une sortie sympa", NOW, CITIES)
    refined = LLMParseRefiner(url, "m", timeout_s=0.3).refine(parsed, CITIES)
    assert refined == replace(parsed, notes=(*parsed.notes, UNAVAILABLE))


def test_the_refiner_is_chosen_by_configuration() -> None:
    assert open_refiner(RetrievalSettings()) is None
    with pytest.raises(ConfigError, match="PULS_PARSE_REFINER_URL"):
        open_refiner(RetrievalSettings(parse_refiner="llm"))
    refiner = open_refiner(
        RetrievalSettings(
            parse_refiner="llm",
            parse_refiner_url="http://vllm:8000/v1",
            parse_refiner_response_format="json_object",
        )
    )
    assert isinstance(refiner, LLMParseRefiner) and refiner.response_format == "json_object"
    refiner.close()


@pytest.mark.integration
def test_search_json_shows_what_the_model_added(
    ingested: Path, model: tuple[ScriptedModel, str]
) -> None:
    scripted, url = model
    scripted.content = answer(themes=["jazz"])
    env = puls_env(ingested, PULS_PARSE_REFINER="llm", PULS_PARSE_REFINER_URL=url)
    now = "2025-06-01T10:00:00+02:00"
    result = run_puls("search", "une sortie sympa à Paris en juin 2025", "--now", now,
                      "--json", env=env)  # fmt: skip
    output = json.loads(result.stdout)
    assert "jazz" in output["parse"]["terms"]
    assert "LLM : thèmes ajoutés jazz" in output["parse"]["notes"]
    assert "jazz" in output["results"][0]["title"].lower()
    assert len(scripted.requests) == 1


def test_a_refiner_without_its_url_is_one_line(tmp_path: Path) -> None:
    result = run_puls("search", "jazz", env=puls_env(tmp_path, PULS_PARSE_REFINER="llm"),
                      check=False)  # fmt: skip
    message = "puls: error: PULS_PARSE_REFINER=llm needs PULS_PARSE_REFINER_URL"
    assert result.returncode == 1 and result.stderr.strip() == message


@pytest.mark.integration
@pytest.mark.slow
def test_a_real_server_answers_under_the_schema() -> None:
    """llama-cpp-python's server turns the schema into a grammar: even the base model's
    answer validates (what it says is not judged: it is a 270M base model)."""
    from tests.conftest_api import llama_cpp_server

    with llama_cpp_server() as url:
        refiner = LLMParseRefiner(url, "gemma", timeout_s=60, response_format="json_object")
        parsed = parse_query("un concert de jazz ce week-end", NOW, CITIES)
        refined = refiner.refine(parsed, CITIES)
        refiner.close()
    assert UNAVAILABLE not in refined.notes
    assert refined.window == parsed.window and refined.terms[:2] == parsed.terms[:2]
