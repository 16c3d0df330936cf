"""Feedback joined with the rated answer, in PostgreSQL, counted in the metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest_memory import JAZZ, app_client, ask, cited, postgres_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(ingested: Path) -> Iterator[TestClient]:
    with postgres_database() as (_, url), app_client(ingested, profile_database_url=url) as c:
        yield c


def test_feedback_is_stored_with_the_answer_it_rates(client: TestClient) -> None:
    answer = ask(client, JAZZ, user="léa")
    request_id, uids = answer.headers["x-request-id"], cited(answer)
    body = {"request_id": request_id, "rating": "down", "reason": "trop loin",
            "event_uid": uids[0], "user": "léa"}  # fmt: skip
    assert client.post("/v1/feedback", json=body).status_code == 201
    rows = client.app.state.memory.feedback.rows(request_id)  # type: ignore[attr-defined]
    assert len(rows) == 1
    row = rows[0]
    assert row["query"] == JAZZ and row["cited_uids"] == uids and row["model"] == "small"
    assert row["rating"] == "down" and row["reason"] == "trop loin" and row["latency_ms"] > 0
    metrics = client.get("/metrics").text
    assert 'puls_feedback_total{rating="down"} 1.0' in metrics


def test_unknown_requests_foreign_users_and_uncited_events_are_refused(
    client: TestClient,
) -> None:
    unknown = client.post("/v1/feedback", json={"request_id": "nope", "rating": "up"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "request_not_found"
    answer = ask(client, JAZZ, user="léa")
    request_id = answer.headers["x-request-id"]
    foreign = {"request_id": request_id, "rating": "up", "user": "max"}
    assert client.post("/v1/feedback", json=foreign).status_code == 403
    uncited = {"request_id": request_id, "rating": "up", "user": "léa", "event_uid": "x"}
    assert client.post("/v1/feedback", json=uncited).status_code == 400
    assert (
        client.post("/v1/feedback", json={"request_id": request_id, "rating": "meh"}).status_code
        == 422
    )
