"""Auth, body limits, model routing and daily token budgets, on one real `puls serve` with
API keys, a 4 KiB body limit, llama.cpp's own server as the large engine and its token
counters in the machine's Redis (a key prefix of this module's own)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import openai
import pytest
import redis
from openai import OpenAI

from tests.conftest import RemoteServer, puls_env
from tests.conftest_api import REDIS_URL, llama_cpp_server, redis_prefix, scrape

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "key-two"
NOW = "2025-06-01T10:00:00+02:00"
LOOKUP = "Un concert de jazz à Paris en juin 2025 ?"
COMPARISON = "Plutôt du jazz ou du théâtre à Paris en juin 2025 ?"
BODY_LIMIT = 4096
HARD_CAP = 250


@pytest.fixture(scope="module")
def policy_server(ingested: Path) -> Iterator[tuple[RemoteServer, str]]:
    with llama_cpp_server() as large_url, redis_prefix() as prefix:
        env = puls_env(
            ingested,
            PULS_API_KEYS=f"key-one, {KEY}",
            PULS_MAX_BODY_BYTES=str(BODY_LIMIT),
            PULS_LLM_LARGE_URL=large_url,
            PULS_LLM_LARGE_MODEL="gemma-large",
            PULS_REDIS_URL=REDIS_URL,
            PULS_BUDGET_KEY_PREFIX=prefix,
            PULS_DAILY_TOKEN_BUDGET_PER_USER="1",
            PULS_DAILY_TOKEN_HARD_CAP_PER_USER=str(HARD_CAP),
        )
        remote = RemoteServer(env)
        try:
            yield remote, prefix
        finally:
            remote.stop()


@pytest.fixture(scope="module")
def server(policy_server: tuple[RemoteServer, str]) -> RemoteServer:
    return policy_server[0]


@pytest.fixture(scope="module")
def client(server: RemoteServer) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)


def ask(client: OpenAI, text: str, **extra: object) -> openai.APIResponse:  # type: ignore[type-arg]
    return client.chat.completions.with_raw_response.create(
        model="puls",
        messages=[{"role": "user", "content": text}],
        extra_body={"puls": {"now": NOW}},
        **extra,  # type: ignore[arg-type]
    )


def test_missing_or_wrong_key_is_401(server: RemoteServer) -> None:
    url = f"{server.url}/v1/models"
    for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": f"Basic {KEY}"}):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["type"] == "authentication_error"
        assert response.headers["x-request-id"]
    assert httpx.get(url, headers={"authorization": "Bearer key-one"}).status_code == 200
    assert httpx.get(f"{server.url}/healthz").status_code == 200, "probes stay open"
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0).models.list()


def test_bodies_over_the_limit_are_413(server: RemoteServer) -> None:
    big = {"model": "puls", "messages": [{"role": "user", "content": "x" * BODY_LIMIT}]}
    headers = {"authorization": f"Bearer {KEY}"}
    declared = httpx.post(f"{server.url}/v1/chat/completions", json=big, headers=headers)
    payload = declared.request.content

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count
        for i in range(0, len(payload), 1000):
            yield payload[i : i + 1000]

    chunked = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=chunks(),
        headers={**headers, "content-type": "application/json"},
    )
    assert "content-length" not in {k.lower() for k in chunked.request.headers}
    for response in (declared, chunked):
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "request_too_large"


def test_a_lookup_goes_small_and_a_comparison_large(client: OpenAI, server: RemoteServer) -> None:
    before = scrape(server.url)
    small = ask(client, LOOKUP)
    large = ask(client, COMPARISON)
    assert small.headers["x-puls-route"] == "small"
    assert small.headers["x-puls-route-reason"] == "lookup"
    assert large.headers["x-puls-route"] == "large"
    assert large.headers["x-puls-route-reason"] == "comparison"
    answer = large.parse()
    assert answer.model_extra["citations"] and answer.usage.completion_tokens > 0
    assert int(large.headers["x-puls-tokens-completion"]) == answer.usage.completion_tokens
    after = scrape(server.url)
    key = "puls_completion_tokens_total{model=large}"
    assert after[key] - before.get(key, 0) == answer.usage.completion_tokens
    decisions = "puls_route_decisions_total{model=large,reason=comparison}"
    assert after[decisions] - before.get(decisions, 0) == 1


def test_a_spent_budget_degrades_then_a_spent_cap_is_429(
    client: OpenAI, policy_server: tuple[RemoteServer, str]
) -> None:
    _, prefix = policy_server
    user = f"user-{uuid.uuid4().hex[:8]}"
    first = ask(client, COMPARISON, user=user)
    assert "x-puls-degraded" not in first.headers
    assert first.headers["x-puls-route"] == "large"
    spent = first.parse().usage.total_tokens
    assert 1 <= spent < HARD_CAP, "the test's cap assumes one answer fits under it"

    second = ask(client, COMPARISON, user=user)
    assert second.headers["x-puls-degraded"] == "budget"
    assert (second.headers["x-puls-route"], second.headers["x-puls-route-reason"]) == (
        "small",
        "budget",
    )
    degraded = second.parse()
    assert len(degraded.model_extra["citations"]) <= 3
    assert degraded.usage.completion_tokens <= 20

    day = datetime.now(UTC).strftime("%Y-%m-%d")
    key = f"{prefix}:{day}:user:{user}"
    stored = int(redis.Redis.from_url(REDIS_URL).get(key) or 0)
    assert stored == spent + degraded.usage.total_tokens
    while stored < HARD_CAP:  # degraded answers go on until the cap is reached
        more = ask(client, LOOKUP, user=user)
        assert more.headers["x-puls-degraded"] == "budget"
        stored += more.parse().usage.total_tokens
    assert int(redis.Redis.from_url(REDIS_URL).get(key) or 0) == stored

    with pytest.raises(openai.RateLimitError) as excinfo:
        ask(client, LOOKUP, user=user)
    assert int(excinfo.value.response.headers["retry-after"]) > 0
    assert excinfo.value.body["code"] == "token_budget_exhausted"  # type: ignore[index]
    other = ask(client, LOOKUP, user=f"other-{user}")
    assert "x-puls-degraded" not in other.headers, "budgets are per user"


def test_streams_carry_the_route_in_their_headers(server: RemoteServer) -> None:
    body = {
        "model": "puls",
        "stream": True,
        "messages": [{"role": "user", "content": COMPARISON}],
        "puls": {"now": NOW},
    }
    with httpx.stream(
        "POST",
        f"{server.url}/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {KEY}"},
        timeout=120,
    ) as response:
        assert response.status_code == 200
        assert response.headers["x-puls-route"] == "large"
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
