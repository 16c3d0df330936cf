"""The OpenAgenda API client against a loopback HTTP server replaying API-shaped pages.

The real API cannot be reached from here; the server below speaks its protocol (`after[]`
cursor, `updatedAt[gte]`, `key` header, 429 with Retry-After) over real HTTP. Incremental runs
start from the agenda's stored watermark (the newest `updatedAt` ingested).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from ingest.mapping import shipped_mappings
from ingest.normalise import detail_fields, to_event
from ingest.openagenda_api import (
    OpenAgendaClient,
    OpenAgendaRejected,
    OpenAgendaUnavailable,
    to_ods_row,
)
from ingest.staging import StagingStore
from tests.conftest import loopback_server, puls_env, run_puls

pytestmark = pytest.mark.unit
KEY = "test-key"
START = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)


def api_event(n: int) -> dict:
    begin = START + timedelta(days=n)
    return {
        "uid": 1000 + n,
        "slug": f"concert-{n}",
        "title": {"fr": f"Concert {n}", "en": f"Gig {n}"},
        "description": {"fr": "<p>Jazz <b>live</b></p>"},
        "keywords": {"fr": ["jazz", "concert"]},
        "timings": [{"begin": begin.isoformat(), "end": (begin + timedelta(hours=2)).isoformat()}],
        "location": {"name": "Le Duc", "address": "42 rue des Lombards", "city": "Paris",
                     "postalCode": "75001", "latitude": 48.8597, "longitude": 2.3479},
        "updatedAt": (START + timedelta(minutes=n)).isoformat(),
        "status": 6 if n == 3 else 1,
        "attendanceMode": 1,
        "accessibility": {"hi": True, "vi": False},
        "registration": [{"type": "link", "value": "https://billets.example/1"}],
        "age": {"min": 8, "max": None},
    }  # fmt: skip


class Agenda:
    """What the server serves and how it misbehaves; `seen` records every request."""

    def __init__(self, events: list[dict], page_size: int = 4) -> None:
        self.events, self.page_size = events, page_size
        self.failures: list[tuple[int, dict[str, str]]] = []
        self.seen: list[dict[str, list[str]]] = []

    def answer(self, query: dict[str, list[str]], key: str | None) -> tuple[int, dict, dict]:
        self.seen.append(query)
        if key != KEY:
            return 401, {}, {"error": "invalid key"}
        if self.failures:
            status, headers = self.failures.pop(0)
            return status, headers, {"error": "try later"}
        since = query.get("updatedAt[gte]", [""])[0]
        events = [e for e in self.events if e["updatedAt"] >= since]
        offset = int(query.get("after[]", ["0"])[0])
        page = events[offset : offset + self.page_size]
        more = offset + self.page_size < len(events)
        body = {"total": len(events), "events": page,
                "after": [offset + self.page_size, "x"] if more else None}  # fmt: skip
        return 200, {}, body


@pytest.fixture
def agenda() -> Iterator[tuple[Agenda, str]]:
    state = Agenda([api_event(n) for n in range(10)])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlparse(self.path)
            assert url.path == "/v2/agendas/42/events"
            status, headers, body = state.answer(parse_qs(url.query), self.headers.get("key"))
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {**headers, "Content-Type": "application/json"}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass  # keep test output clean

    with loopback_server(Handler) as url:
        yield state, f"{url}/v2"


def client(base: str, key: str = KEY, attempts: int = 4) -> OpenAgendaClient:
    return OpenAgendaClient(key, base_url=base, max_attempts=attempts, backoff=0.0)


def test_pages_follow_the_after_cursor(agenda: tuple[Agenda, str]) -> None:
    state, base = agenda
    events = list(client(base).events("42"))
    assert [e["uid"] for e in events] == [1000 + n for n in range(10)]
    assert [q.get("after[]") for q in state.seen] == [None, ["4", "x"], ["8", "x"]]
    assert all(q["sort"] == ["updatedAt.asc"] for q in state.seen)


def test_incremental_asks_only_for_updates(agenda: tuple[Agenda, str]) -> None:
    state, base = agenda
    since = START + timedelta(minutes=7)
    events = list(client(base).events("42", updated_since=since))
    assert [e["uid"] for e in events] == [1007, 1008, 1009]
    assert state.seen[0]["updatedAt[gte]"] == [since.isoformat()]


def test_429_and_5xx_are_retried_honouring_retry_after(agenda: tuple[Agenda, str]) -> None:
    state, base = agenda
    state.failures = [(429, {"Retry-After": "0"}), (503, {}), (500, {})]
    assert len(list(client(base, attempts=4).events("42"))) == 10
    assert len(state.seen) == 3 + 3


def test_gives_up_after_the_last_attempt(agenda: tuple[Agenda, str]) -> None:
    state, base = agenda
    state.failures = [(503, {})] * 3
    with pytest.raises(OpenAgendaUnavailable, match="HTTP 503"):
        list(client(base, attempts=3).events("42"))
    assert len(state.seen) == 3


def test_a_bad_key_is_not_retried(agenda: tuple[Agenda, str]) -> None:
    state, base = agenda
    with pytest.raises(OpenAgendaRejected, match="401"):
        list(client(base, key="wrong").events("42"))
    assert len(state.seen) == 1


def test_timeouts_are_retried_then_reported() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    api = OpenAgendaClient(KEY, max_attempts=2, backoff=0.0, transport=httpx.MockTransport(hang))
    with pytest.raises(OpenAgendaUnavailable, match="ReadTimeout"):
        list(api.events("42"))


def test_api_events_normalise_like_export_rows() -> None:
    ods = next(m for m in shipped_mappings() if m.name == "openagenda-ods")
    row = to_ods_row(api_event(3), "42")
    event = to_event(row, ods, "openagenda-api:42")
    assert (event.uid, event.title, event.description) == ("1003", "Concert 3", "Jazz live")
    assert event.keywords == ("jazz", "concert") and event.lat == pytest.approx(48.8597)
    from ingest.details import event_details

    details = event_details(detail_fields(row, ods))
    assert details.status == "cancelled" and details.accessibility == ("hearing",)
    assert details.registration_links == ("https://billets.example/1",) and details.age_min == 8


@pytest.mark.integration
def test_cli_ingests_an_agenda_and_a_rerun_writes_nothing(
    agenda: tuple[Agenda, str], tmp_path: Path
) -> None:
    _, base = agenda
    env = puls_env(tmp_path / "store")
    args = ("ingest-api", "42", "--key", KEY, "--base-url", base, "--json")
    first = json.loads(run_puls(*args, env=env).stdout)
    assert first["read"] == 10 and first["inserted"] == 10 - first["rejected"] - first["merged"]
    assert first["inserted"] > 0
    again = json.loads(run_puls(*args, env=env).stdout)
    assert (again["inserted"], again["updated"]) == (0, 0)
    assert again["read"] == again["unchanged"] == 1  # from the watermark: the newest again
    whole = json.loads(run_puls(*args, "--full", env=env).stdout)
    assert (whole["inserted"], whole["updated"], whole["unchanged"]) == (0, 0, first["inserted"])

    refused = run_puls(
        "ingest-api", "42", "--key", "wrong", "--base-url", base, env=env, check=False
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("puls: error:") and len(refused.stderr.splitlines()) == 1
    no_key = run_puls("ingest-api", "42", "--base-url", base, env=env, check=False)
    assert no_key.returncode == 2 and "PULS_INGEST_OPENAGENDA_KEY" in no_key.stderr


@pytest.mark.integration
def test_a_second_run_starts_from_the_stored_watermark(
    agenda: tuple[Agenda, str], tmp_path: Path
) -> None:
    state, base = agenda
    env = puls_env(tmp_path / "store")
    args = ("ingest-api", "42", "--key", KEY, "--base-url", base, "--json")
    first = json.loads(run_puls(*args, env=env).stdout)
    newest = (START + timedelta(minutes=9)).isoformat()
    assert first["since"] is None and first["watermark"] == newest
    assert first["read"] == 10 and len(state.seen) == 3  # three pages of 4

    # two new events and one edited since: the next run asks from the watermark only
    edited = {**api_event(2), "title": {"fr": "Concert 2 (complet)"},
              "updatedAt": (START + timedelta(minutes=30)).isoformat()}  # fmt: skip
    state.events = [e for e in state.events if e["uid"] != 1002]
    state.events += [api_event(10), api_event(11), edited]
    state.seen.clear()
    second = json.loads(run_puls(*args, env=env).stdout)
    assert [q["updatedAt[gte]"] for q in state.seen] == [[newest]]
    assert second["since"] == newest and second["read"] == 4  # 1009 again (gte), 1010, 1011, 1002
    assert (second["inserted"], second["updated"], second["unchanged"]) == (2, 1, 1)
    assert second["watermark"] == edited["updatedAt"]

    # an explicit older --since re-reads more but never moves the watermark back
    state.seen.clear()
    older = run_puls(*args, "--since", START.isoformat(), env=env)
    assert json.loads(older.stdout)["watermark"] == edited["updatedAt"]
    assert state.seen[0]["updatedAt[gte]"] == [START.isoformat()]
    state.seen.clear()
    full = json.loads(run_puls(*args, "--full", env=env).stdout)
    assert "updatedAt[gte]" not in state.seen[0] and full["read"] == 12
    assert (full["inserted"], full["updated"]) == (0, 0)


@pytest.mark.integration
def test_watermark_is_stored_per_agenda_on_sqlite_and_postgresql(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    for url in (f"sqlite:///{tmp_path / 'puls.db'}", request.getfixturevalue("postgres_url")):
        staging = StagingStore(url)
        try:
            assert staging.watermark("42") is None
            later = START + timedelta(days=1)
            assert staging.advance_watermark("42", later) == later
            assert staging.advance_watermark("42", START) == later  # never backwards
            assert staging.watermark("42") == later and staging.watermark("7") is None
        finally:
            staging.close()
