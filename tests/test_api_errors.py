"""Bad requests get OpenAI's error envelope with the right status, from the real server."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai import OpenAI

from tests.conftest import RemoteServer

pytestmark = [pytest.mark.integration]

USER = [{"role": "user", "content": "Un concert ?"}]


def post(server: RemoteServer, body: object | str) -> httpx.Response:
    if isinstance(body, str):
        return httpx.post(
            f"{server.url}/v1/chat/completions",
            content=body,
            headers={"content-type": "application/json"},
        )
    return httpx.post(f"{server.url}/v1/chat/completions", json=body)


def assert_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    return error


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ("{not json", 400, None),
        ({"model": "puls"}, 422, "messages"),
        ({"model": "puls", "messages": []}, 422, "messages"),
        ({"model": "puls", "messages": USER, "temperature": 7}, 422, "temperature"),
        ({"model": "puls", "messages": [{"role": "wizard", "content": "x"}]}, 422, None),
        ({"model": "puls", "messages": USER, "puls": {"bogus": 1}}, 400, "puls.bogus"),
        ({"model": "puls", "messages": USER, "puls": {"now": "demain"}}, 400, "puls.now"),
        (
            {"model": "puls", "messages": USER, "puls": {"now": "2025-06-01T10:00:00"}},
            400,
            "puls.now",
        ),
        (
            {"model": "puls", "messages": USER, "puls": {"location": {"lat": 99, "lon": 2}}},
            400,
            None,
        ),
        ({"model": "puls", "messages": [{"role": "system", "content": "x"}]}, 400, "messages"),
        ({"model": "puls", "messages": [{"role": "user", "content": "  "}]}, 400, "messages"),
        ({"model": "gpt-4o", "messages": USER}, 404, "model"),
        ({"model": "puls", "messages": USER, "max_completion_tokens": 0}, 422, None),
        ({"model": "puls", "messages": USER, "user": "u" * 300}, 422, "user"),
        ({"model": "puls", "messages": USER, "stream_options": {"include_usage": 3}}, 422, None),
    ],
)
def test_bad_bodies(server: RemoteServer, body: object, status: int, param: str | None) -> None:
    assert_error(post(server, body), status, param)


def test_unknown_route_is_enveloped(server: RemoteServer) -> None:
    assert_error(httpx.get(f"{server.url}/v1/nope"), 404)


def test_stream_errors_come_before_the_stream(server: RemoteServer) -> None:
    """A bad streamed request is a plain 4xx, never a 200 stream hiding an error."""
    response = post(server, {"model": "puls", "stream": True, "messages": USER, "puls": {"x": 1}})
    assert_error(response, 400, "puls.x")


def test_sdk_raises_typed_errors(server: RemoteServer) -> None:
    client = OpenAI(base_url=f"{server.url}/v1", api_key="local", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=USER)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.chat.completions.create(model="puls", messages=USER, extra_body={"puls": {"k": 1}})  # type: ignore[arg-type]
    assert excinfo.value.body["param"] == "puls.k"  # type: ignore[index]
