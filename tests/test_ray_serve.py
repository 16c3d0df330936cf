"""The Ray Serve graph: its configuration, the LLM deployment behind a handle (Serve's local
testing mode, in-process), and one real `serve.run` answering over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from openai import OpenAI
from ray import serve

from serving.deployments import LLMDeployment, ServeLLM, build_app, ingress_options, llm_options
from serving.settings import ServingSettings
from tests.conftest import RemoteServer, ingested_uids, puls_env
from tests.test_llm_engines import check_contract

pytestmark = pytest.mark.integration


@pytest.mark.unit
def test_gpu_profile_resources_come_from_settings() -> None:
    gpu = ServingSettings(ray_llm_num_gpus=1, ray_llm_replicas=2, ray_llm_max_ongoing_requests=32)
    assert llm_options(gpu) == {
        "num_replicas": 2,
        "max_ongoing_requests": 32,
        "ray_actor_options": {"num_cpus": 1.0, "num_gpus": 1.0},
    }
    scaled = ingress_options(ServingSettings(ray_autoscaling_max_replicas=4))
    assert scaled["autoscaling_config"]["max_replicas"] == 4 and "num_replicas" not in scaled
    assert ingress_options(ServingSettings())["num_replicas"] == 1


@pytest.mark.unit
def test_the_graph_binds_ingress_and_llm() -> None:
    from puls.settings import load_settings

    app = build_app(load_settings())
    assert isinstance(app, serve.Application)


def test_llm_deployment_honours_the_protocol_through_a_handle() -> None:
    handle = serve.run(LLMDeployment.bind(ServingSettings()), _local_testing_mode=True)
    asyncio.run(check_contract(ServeLLM(handle)))


@pytest.mark.slow
def test_puls_serve_on_ray_answers_over_http(ingested: Path, sample_files: list[Path]) -> None:
    remote = RemoteServer(puls_env(ingested), ray=True)
    try:
        client = OpenAI(base_url=f"{remote.url}/v1", api_key="local", max_retries=0)
        r = client.chat.completions.create(
            model="puls",
            messages=[{"role": "user", "content": "Un concert de jazz à Paris en juin 2025 ?"}],
            extra_body={"puls": {"now": "2025-06-01T10:00:00+02:00"}},
        )
        stream = client.chat.completions.create(
            model="puls",
            messages=[{"role": "user", "content": "Un concert de jazz à Paris en juin 2025 ?"}],
            extra_body={"puls": {"now": "2025-06-01T10:00:00+02:00"}},
            stream=True,
        )
        pieces = [
            c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
        ]
    finally:
        remote.stop()
    citations = r.model_extra["citations"]
    assert citations and {c["uid"] for c in citations} <= ingested_uids(sample_files)
    assert "jazz" in citations[0]["title"].lower()
    assert len(pieces) > 3 and "".join(pieces).startswith("Voici")
