"""The Ray Serve application graph, defined once: an `Ingress` deployment serving the FastAPI
app, an `LLM` deployment owning the engine and, when configured, `Embedder` and `Reranker`
deployments owning those models, each reached through a `DeploymentHandle`.

    HTTP ──▶ Ingress (FastAPI: OpenAI API, retrieval, guardrails) ──handle──▶ LLM (engine)
                                                                  ├─handle──▶ Embedder (optional)
                                                                  └─handle──▶ Reranker (optional)

The LLM deployment owns an in-process engine (llama.cpp here). With `PULS_LLM_URL` the engine
is a server of its own (vLLM in the gpu profile, docs/adr/0002) and the ingress calls it over
HTTP directly, as it calls the large route: no LLM deployment is deployed.

Retrieval (Milvus search, ranking) stays in the ingress: with Milvus Lite one process must
own the data dir, so the embedded profile runs one ingress replica; with a Milvus server the
ingress scales. The model-bound parts take their resources (`num_gpus` in the gpu profile)
from settings. On this CPU machine the embedder and the feature reranker stay in the ingress
(a handle hop costs more than it saves); the gpu profile moves the models out
(`PULS_RAY_EMBEDDER_DEPLOYMENT`, `PULS_RAY_RERANKER_DEPLOYMENT`). The Reranker deployment only
scores (query, passage) pairs with the cross-encoder; place, time and job features stay in
the ingress, which has the candidates. The same `create_app` runs without Ray for development
(`puls serve --no-ray`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from puls.settings import Settings, load_settings
from retrieval import RetrievalSettings, Retriever, open_retriever
from retrieval.build import ConfigError, open_embedder
from retrieval.embedder import Vectors
from retrieval.rerank import CrossEncoderReranker, load_cross_encoder
from serving.app import create_app
from serving.llm import LLM, build_large_llm, build_llm
from serving.llm.protocol import Chunk, SamplingParams
from serving.ray_start import start_local_ray
from serving.settings import ServingSettings

APP_NAME = "puls"
LLM_DEPLOYMENT = "LLM"
EMBEDDER_DEPLOYMENT = "Embedder"
RERANKER_DEPLOYMENT = "Reranker"


@serve.deployment(name=LLM_DEPLOYMENT)
class LLMDeployment:
    """Owns one engine (llama.cpp in-process here, or a client of a remote server)."""

    def __init__(self, settings: ServingSettings) -> None:
        self.llm = build_llm(settings)

    async def warm_up(self) -> None:
        await self.llm.warm_up()

    async def health(self) -> None:
        """Not Serve's `check_health`: a replica that is still loading is not unhealthy."""
        await self.llm.check_health()

    async def stream(self, prompt: str, params: SamplingParams) -> AsyncIterator[Chunk]:
        async for chunk in self.llm.stream(prompt, params):
            yield chunk


class ServeLLM:
    """The `LLM` protocol over a handle to `LLMDeployment`; chunks stream through Serve."""

    name = "ray-serve"

    def __init__(self, handle: DeploymentHandle) -> None:
        self._handle = handle

    async def warm_up(self) -> None:
        await self._handle.warm_up.remote()

    async def check_health(self) -> None:
        await self._handle.health.remote()

    async def aclose(self) -> None:
        """The deployment owns the engine; Serve shuts it down."""

    async def stream(self, prompt: str, params: SamplingParams) -> AsyncIterator[Chunk]:
        chunks = self._handle.options(stream=True).stream.remote(prompt, params)
        assert isinstance(chunks, DeploymentResponseGenerator)
        finished = False
        try:
            async for chunk in chunks:
                yield chunk
            finished = True
        finally:
            if not finished:  # the client went away: stop generating for it
                chunks.cancel()


@serve.deployment(name=EMBEDDER_DEPLOYMENT)
class EmbedderDeployment:
    """Owns the embedding model (e5 here, BGE-M3 on a GPU in the gpu profile)."""

    def __init__(self, settings: RetrievalSettings) -> None:
        self.embedder = open_embedder(settings)

    def dim(self) -> int:
        return self.embedder.dim

    def embed_queries(self, texts: list[str]) -> Vectors:
        return self.embedder.embed_queries(texts)

    def embed_passages(self, texts: list[str]) -> Vectors:
        return self.embedder.embed_passages(texts)


class ServeEmbedder:
    """The `Embedder` protocol over a handle to `EmbedderDeployment`. Blocking calls: the
    retriever runs in worker threads, never on the event loop."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self._handle = handle
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self._handle.dim.remote().result())
        return self._dim

    def embed_queries(self, texts: list[str]) -> Vectors:
        vectors: Vectors = self._handle.embed_queries.remote(texts).result()
        return vectors

    def embed_passages(self, texts: list[str]) -> Vectors:
        vectors: Vectors = self._handle.embed_passages.remote(texts).result()
        return vectors


@serve.deployment(name=RERANKER_DEPLOYMENT)
class RerankerDeployment:
    """Owns the cross-encoder (e.g. BAAI/bge-reranker-v2-m3 on a GPU) and scores pairs."""

    def __init__(self, settings: RetrievalSettings) -> None:
        check_reranker_deployment(settings)
        assert settings.reranker_model is not None
        self.model = load_cross_encoder(
            settings.reranker_model, settings.reranker_device, settings.reranker_dtype
        )

    def predict(self, pairs: list[tuple[str, str]]) -> list[float]:
        return [float(score) for score in self.model.predict(pairs)]


class ServeCrossEncoder:
    """A cross-encoder's `predict` over a handle to `RerankerDeployment`: what
    `CrossEncoderReranker` needs as its model. Blocking, like `ServeEmbedder`."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self._handle = handle

    def predict(self, pairs: list[tuple[str, str]]) -> list[float]:
        scores: list[float] = self._handle.predict.remote(list(pairs)).result()
        return scores


def check_reranker_deployment(settings: RetrievalSettings) -> None:
    """A Reranker deployment hosts a cross-encoder: the feature reranker has no model."""
    if settings.reranker != "cross-encoder" or not settings.reranker_model:
        raise ConfigError(
            "PULS_RAY_RERANKER_DEPLOYMENT needs PULS_RERANKER=cross-encoder and PULS_RERANKER_MODEL"
        )


def serve_retriever(settings: Settings) -> Retriever:
    """The ingress's retriever: its query embedder and its cross-encoder are the Embedder and
    Reranker deployments when there are such."""
    embedder, reranker = None, None
    if settings.serving.ray_embedder_deployment:
        handle = serve.get_deployment_handle(EMBEDDER_DEPLOYMENT, app_name=APP_NAME)
        embedder = ServeEmbedder(handle)
    if settings.serving.ray_reranker_deployment:
        handle = serve.get_deployment_handle(RERANKER_DEPLOYMENT, app_name=APP_NAME)
        reranker = CrossEncoderReranker(ServeCrossEncoder(handle), settings.retrieval)
    return open_retriever(settings.retrieval, embedder=embedder, reranker=reranker)


def serve_engines(settings: ServingSettings) -> dict[str, LLM]:
    """Engines for the ingress. The in-process engine (llama.cpp) through the LLM deployment;
    a remote one (`PULS_LLM_URL`, vLLM's server) and the large route over HTTP from here: an
    LLM deployment in between would only relay chunks, one more hop (+24 ms mean TTFT,
    docs/benchmarks.md)."""
    if settings.llm_url:
        small = build_llm(settings)
    else:
        small = ServeLLM(serve.get_deployment_handle(LLM_DEPLOYMENT, app_name=APP_NAME))
    engines: dict[str, LLM] = {"small": small}
    large = build_large_llm(settings)
    if large is not None:
        engines["large"] = large
    return engines


def ingress_app() -> FastAPI:
    """Built on the ingress replica (settings come from its environment, see `run`)."""
    return create_app(
        load_settings(),
        engine_factory=serve_engines,
        retriever_factory=serve_retriever,
        echo_request_id=False,  # Serve answers with the request id itself
        wait_for_warm_up=True,  # no request reaches a replica before it is warm
    )


@serve.deployment(name="Ingress")
@serve.ingress(ingress_app)
class Ingress:
    """The HTTP entry point; the handles are bound so the graph deploys those deployments too
    (the app reaches them by name, see `serve_engines` and `serve_retriever`)."""

    def __init__(
        self,
        llm: DeploymentHandle | None = None,
        embedder: DeploymentHandle | None = None,
        reranker: DeploymentHandle | None = None,
    ) -> None:
        self.llm = llm
        self.embedder = embedder
        self.reranker = reranker


def llm_options(settings: ServingSettings) -> dict[str, Any]:
    """Replicas, queue bound and per-replica resources of the LLM deployment."""
    return {
        "num_replicas": settings.ray_llm_replicas,
        "max_ongoing_requests": settings.ray_llm_max_ongoing_requests,
        "ray_actor_options": {
            "num_cpus": settings.ray_llm_num_cpus,
            "num_gpus": settings.ray_llm_num_gpus,
        },
    }


def _model_options(replicas: int, num_cpus: float, num_gpus: float) -> dict[str, Any]:
    return {"num_replicas": replicas,
            "ray_actor_options": {"num_cpus": num_cpus, "num_gpus": num_gpus}}  # fmt: skip


def embedder_options(s: ServingSettings) -> dict[str, Any]:
    """Replicas and per-replica resources of the Embedder deployment."""
    return _model_options(s.ray_embedder_replicas, s.ray_embedder_num_cpus, s.ray_embedder_num_gpus)


def reranker_options(s: ServingSettings) -> dict[str, Any]:
    """Replicas and per-replica resources of the Reranker deployment."""
    return _model_options(s.ray_reranker_replicas, s.ray_reranker_num_cpus, s.ray_reranker_num_gpus)


def ingress_options(settings: ServingSettings) -> dict[str, Any]:
    """Replicas (fixed or autoscaled) and queue bound of the ingress deployment."""
    options: dict[str, Any] = {"max_ongoing_requests": settings.ray_ingress_max_ongoing_requests}
    if settings.ray_autoscaling_max_replicas:
        options["autoscaling_config"] = {
            "min_replicas": settings.ray_ingress_replicas,
            "max_replicas": settings.ray_autoscaling_max_replicas,
            "target_ongoing_requests": max(1, settings.ray_ingress_max_ongoing_requests // 2),
        }
    else:
        options["num_replicas"] = settings.ray_ingress_replicas
    return options


def build_app(settings: Settings) -> serve.Application:
    """The whole graph with per-deployment resources from settings (the same graph runs in
    Serve's local testing mode, in a local Ray cluster, or on KubeRay). Raises
    `ConfigError` for a Reranker deployment without a cross-encoder."""
    s, r = settings.serving, settings.retrieval
    llm = None
    if not s.llm_url:  # a remote engine is called from the ingress (`serve_engines`)
        llm = LLMDeployment.options(**llm_options(s)).bind(s)  # type: ignore[attr-defined]
    embedder, reranker = None, None
    if s.ray_embedder_deployment:
        embedder = EmbedderDeployment.options(**embedder_options(s)).bind(r)  # type: ignore[attr-defined]
    if s.ray_reranker_deployment:
        check_reranker_deployment(r)
        reranker = RerankerDeployment.options(**reranker_options(s)).bind(r)  # type: ignore[attr-defined]
    return Ingress.options(**ingress_options(s)).bind(llm, embedder, reranker)  # type: ignore[attr-defined]


def app_builder(args: dict[str, str]) -> serve.Application:
    """The graph for a Serve config file: KubeRay's RayService names
    `import_path: serving.deployments:app_builder` (helm/puls, `api.runtime: rayservice`).
    Serve calls it with the application's `args`; settings come from the Ray pods'
    environment instead, as for every other entry point, so `args` must be empty."""
    if args:
        raise ConfigError(
            f"serving.deployments:app_builder takes no args (got {', '.join(sorted(args))}): "
            "set PULS_* variables in the Ray pods' environment"
        )
    return build_app(load_settings())


def run(settings: Settings, host: str, port: int) -> None:
    """Start a local Ray cluster, deploy the graph on `host:port`, block until SIGINT/SIGTERM,
    then let Serve drain in-flight requests and stop."""
    import os
    import signal
    import threading

    import ray

    # Replicas read their settings from the environment; paths must not depend on their cwd.
    env = {k: v for k, v in os.environ.items() if k.startswith("PULS_") or k == "HF_HUB_OFFLINE"}
    env["PULS_DATA_DIR"] = str(settings.retrieval.data_dir.resolve())
    app = build_app(settings)  # a ConfigError before Ray starts
    start_local_ray(
        lambda: ray.init(
            include_dashboard=False, runtime_env={"env_vars": env}, logging_level=logging.WARNING
        )
    )
    # Ours after Ray's own (ray.init installs one that dies on SIGTERM), and before the app:
    # /readyz answers through HAProxy before `serve.run` returns, and a SIGTERM in between
    # killed the driver with nothing stopped.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    serve.start(http_options={"host": host, "port": port})
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    stop.wait()
    # The app first: its replicas drain while HAProxy (or Serve's proxy) still runs. A bare
    # `serve.shutdown()` stops the proxies at once, and cut a stream in flight 0.05 s after
    # the SIGTERM (0.14 s behind Serve's proxy).
    serve.delete(APP_NAME)
    serve.shutdown()
    ray.shutdown()
