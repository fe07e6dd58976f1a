"""deploy/kubernetes, rendered by the real kustomize and validated offline against Kubernetes 1.30 schemas."""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from qastream_shared.consumer import consumer_group
from qastream_shared.services import SERVICES, app_module
from qastream_shared.settings import Settings, env_name
from qastream_shared.topics import REGISTRY, partitions_of

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir())
KUBERNETES = "1.30.0"
SECRET = {"DATABASE_URL", "QA_KEY_PEPPER", "QA_SESSION_SECRET"}
# Settings deliberately absent from the manifests (settings.yaml says why).
UNSET = {"QA_CONSUMER_BATCH_SIZE", "QA_CONSUMER_BATCH_TARGET_MS", "QA_DB_SCHEMA"}


def kustomize() -> str:
    found = os.environ.get("KUSTOMIZE") or shutil.which("kustomize")
    if not found:
        cached = sorted(Path.home().glob(".cache/qastream/kustomize-*/kustomize"))
        found = str(cached[-1]) if cached else None
    if not found:
        message = "kustomize not found: `source scripts/lib.sh && kustomize_bin` builds it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [kustomize(), "build", str(K8S / "overlays" / overlay)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def service_of(deployment: dict[str, Any]) -> str:
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "serve", args
    return str(args[1])


def settings_of(docs: tuple[dict[str, Any], ...]) -> Settings:
    data = of_kind(docs, "ConfigMap")["qastream-settings"]["data"]
    by_env = {env_name(f): f for f in Settings.model_fields}
    # As pydantic-settings reads the environment: complex values (QA_SERVICE_URLS) are JSON.
    return Settings(**{by_env[k]: json.loads(v) if v.startswith("{") else v for k, v in data.items()})


def consumed_partitions(service: str, settings: Settings) -> int:
    """The fewest partitions among the topics the service's consumer group reads."""
    if service in SERVICES:
        consumes = set(app_module(service).SPEC.consumes)
    else:  # a service whose package has not landed yet: bound it by every shared topic
        consumes = {t.name for t in REGISTRY if t.partitions > 1}
    return min(partitions_of(t, settings) for t in REGISTRY if t.name in consumes)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_is_valid_kubernetes(overlay):
    for doc in render(overlay):
        if doc["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: no bundled schema; test_keda_scales_each_stage_on_its_consumer_group checks it
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_the_validator_rejects_what_kubernetes_would():
    deployment = copy.deepcopy(of_kind(render("small"), "Deployment")["qastream-scoring"])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_replicas_never_exceed_partitions(overlay):
    docs = render(overlay)
    settings = settings_of(docs)
    hpas = {
        d["spec"]["scaleTargetRef"]["name"]: d["spec"]
        for d in of_kind(docs, "HorizontalPodAutoscaler").values()
    }
    scaled = {d["spec"]["scaleTargetRef"]["name"]: d["spec"] for d in of_kind(docs, "ScaledObject").values()}
    deployments = of_kind(docs, "Deployment")
    assert set(SERVICES) <= {service_of(d) for d in deployments.values()}
    for name, deployment in deployments.items():
        partitions = consumed_partitions(service_of(deployment), settings)
        assert (name in hpas) != (name in scaled), f"{name}: exactly one autoscaler"
        if name in hpas:
            low, high = hpas[name]["minReplicas"], hpas[name]["maxReplicas"]
        else:
            low, high = scaled[name]["minReplicaCount"], scaled[name]["maxReplicaCount"]
        assert "replicas" not in deployment["spec"], f"{name}: the autoscaler owns replicas"
        assert 1 <= low <= high <= partitions, (
            f"{overlay}/{name}: {low}..{high} replicas, {partitions} partitions"
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_comes_from_the_configmap_the_secret_or_the_pod(overlay):
    docs = render(overlay)
    configured = set(of_kind(docs, "ConfigMap")["qastream-settings"]["data"])
    known = {env_name(f) for f in Settings.model_fields}
    assert configured <= known, f"stale keys: {configured - known}"
    pods = [d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Deployment", "Job")]
    per_pod = set()
    for pod in pods:
        container = pod["containers"][0]
        refs = {(k, v["name"]) for ref in container["envFrom"] for k, v in ref.items()}
        assert refs == {("configMapRef", "qastream-settings"), ("secretRef", "qastream-secrets")}
        per_pod |= {e["name"] for e in container.get("env", ())}
    assert known - UNSET == configured | SECRET | per_pod


def test_each_service_has_probes_resources_a_budget_and_a_route():
    docs = render("small")
    services = of_kind(docs, "Service")
    budgets = {
        d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for d in of_kind(docs, "PodDisruptionBudget").values()
    }
    (ingress,) = of_kind(docs, "Ingress").values()
    routes = {
        p["path"]: p["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for p in rule["http"]["paths"]
    }
    for name, deployment in of_kind(docs, "Deployment").items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert "memory" in container["resources"]["limits"]
        assert name in services and name in budgets
        prefix = {e["name"]: e["value"] for e in container["env"]}["QA_HTTP_ROOT_PATH"]
        assert (
            routes[f"{prefix}(/|$)(.*)"] == name
        )  # the prefix the Ingress strips is the one the service knows
    assert routes["/()(.*)"] == "qastream-reporting"  # the web console


def test_migration_job_runs_migrations_and_topics():
    (job,) = of_kind(render("small"), "Job").values()
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def test_keda_scales_each_stage_on_its_consumer_group():
    docs = render("large-keda")
    settings = settings_of(docs)
    deployments = of_kind(docs, "Deployment")
    assert not of_kind(docs, "HorizontalPodAutoscaler")  # KEDA owns the HPAs it makes
    scaled = of_kind(docs, "ScaledObject")
    assert set(scaled) == set(deployments)
    for so in scaled.values():
        service = service_of(deployments[so["spec"]["scaleTargetRef"]["name"]])
        (trigger,) = so["spec"]["triggers"]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["consumerGroup"] == consumer_group(settings, service)
        assert trigger["metadata"]["allowIdleConsumers"] == "false"
