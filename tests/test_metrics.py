"""`/metrics` on a real `puls serve`: counters move after real requests, names follow
Prometheus conventions, and one app's registry is its own."""

from __future__ import annotations

import re

import httpx
import pytest
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from serving.metrics import STAGES, Metrics
from tests.conftest import RemoteServer
from tests.conftest_api import scrape

NOW = "2025-06-01T10:00:00+02:00"
JAZZ = "Un concert de jazz à Paris en juin 2025 ?"
CHAT = "/v1/chat/completions"


def delta(after: dict[str, float], before: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.mark.integration
@pytest.mark.slow
def test_counters_move_after_real_requests(server: RemoteServer) -> None:
    client = OpenAI(base_url=f"{server.url}/v1", api_key="local", max_retries=0)
    before = scrape(server.url)
    answer = client.chat.completions.create(
        model="puls",
        messages=[{"role": "user", "content": JAZZ}],
        extra_body={"puls": {"now": NOW}},
    )
    stream = client.chat.completions.create(
        model="puls",
        messages=[{"role": "user", "content": JAZZ}],
        extra_body={"puls": {"now": NOW}},
        stream=True,
    )
    assert sum(1 for _ in stream) > 3
    missing = httpx.post(f"{server.url}{CHAT}", json={"model": "nope", "messages": []})
    assert missing.status_code == 422
    client.embeddings.create(model="multilingual-e5-small", input="jazz")
    after = scrape(server.url)

    ok = f"puls_http_requests_total{{method=POST,route={CHAT},status=200}}"
    assert delta(after, before, ok) == 2
    assert delta(after, before, f"puls_http_errors_total{{route={CHAT},status=422}}") == 1
    latency = f"puls_http_request_duration_seconds_count{{method=POST,route={CHAT}}}"
    assert delta(after, before, latency) == 3
    assert delta(after, before, "puls_time_to_first_token_seconds_count{model=small}") == 2
    assert delta(after, before, "puls_time_per_output_token_seconds_count{model=small}") >= 1
    assert answer.usage is not None
    assert (
        delta(after, before, "puls_prompt_tokens_total{model=small}") >= answer.usage.prompt_tokens
    )
    for stage in STAGES:
        assert delta(after, before, f"puls_stage_duration_seconds_count{{stage={stage}}}") >= 2
    # each POST's body, read once: the two answers, the 422 and the embeddings
    assert delta(after, before, "puls_stage_duration_seconds_count{stage=request_body}") == 4
    assert delta(after, before, "puls_stage_duration_seconds_sum{stage=generate}") > 0
    reason = "puls_route_decisions_total{model=small,reason=no_large_model}"
    assert delta(after, before, reason) == 2
    assert delta(after, before, "puls_embedding_tokens_total{}") > 0
    ttft = after["puls_time_to_first_token_seconds_sum{model=small}"]
    e2e = after[f"puls_http_request_duration_seconds_sum{{method=POST,route={CHAT}}}"]
    assert 0 < ttft < e2e
    # the engine's first chunk comes within the answer's TTFT, which it does not exceed
    assert 0 < after["puls_stage_duration_seconds_sum{stage=engine_first_chunk}"] < ttft


@pytest.mark.integration
@pytest.mark.slow
def test_unknown_paths_share_one_label(server: RemoteServer) -> None:
    for path in ("/v1/a", "/v1/b", "/v1/c"):
        assert httpx.get(f"{server.url}{path}").status_code == 404
    text = httpx.get(f"{server.url}/metrics").text
    assert "/v1/a" not in text and 'route="unmatched"' in text


@pytest.mark.unit
def test_names_follow_prometheus_conventions() -> None:
    metrics = Metrics()
    metrics.observe_request("/v1/chat/completions", "POST", 200, 0.1)
    families = list(text_string_to_metric_families(metrics.render().decode()))
    assert families
    for family in families:
        assert re.fullmatch(r"puls_[a-z0-9_]+", family.name), family.name
        assert family.documentation, f"{family.name} has no help text"
        if family.type == "counter":
            assert not family.name.endswith("_total")  # the parser strips it; the samples have it
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), f"{family.name}: durations in seconds"


@pytest.mark.unit
def test_each_app_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.observe_request("/healthz", "GET", 200, 0.01)
    assert b'route="/healthz"' in first.render()
    assert b'route="/healthz"' not in second.render()
