"""The chart's Prometheus objects: the pipeline alerts of prometheus/ as a PrometheusRule where
the Prometheus Operator's CRDs exist (or a value says so), as a rules-file ConfigMap otherwise;
a ServiceMonitor or PodMonitor the same way. kustomize ships the same rules file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from helm_python import _native

from fairprice.common.settings import load_settings
from fairprice.storer.settings import StorerSettings

from .conftest import (
    CHART,
    NAMESPACE,
    RELEASE,
    by_kind,
    kustomize,
    render_chart,
    validate_monitoring,
    validate_strictly,
)

RULES = CHART.parents[1] / "prometheus" / "fairprice.rules.yaml"
OPERATOR_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")
SERVED = [f"monitoring.coreos.com/v1/{kind}" for kind in OPERATOR_KINDS]


def render_in_cluster_serving(
    values: dict[str, Any], api_versions: list[str]
) -> list[dict[str, Any]]:
    """The chart as `helm install` renders it where the cluster serves ``api_versions``
    (.Capabilities.APIVersions; the SDK's Python wrapper does not expose the option yet)."""
    opts = {"name": RELEASE, "namespace": NAMESPACE, "api_versions": api_versions}
    with helm.Chart.load(str(CHART)) as chart:
        rendered = json.loads(
            _native.call_string("helm_render", chart._raw(), json.dumps(values), json.dumps(opts))
        )
    return [
        doc
        for path, text in sorted(rendered.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def _kinds(docs: list[dict[str, Any]]) -> set[str]:
    return {d["kind"] for d in docs if d["kind"] in OPERATOR_KINDS}


def test_without_the_operator_the_rules_ship_as_a_configmap_of_the_one_rules_file() -> None:
    docs = render_chart({})
    assert _kinds(docs) == set()
    rules = by_kind(docs, "ConfigMap")["fairprice-prometheus-rules"]
    assert rules["data"]["fairprice.rules.yaml"] == RULES.read_text().rstrip("\n")


def test_where_the_operator_runs_auto_gives_a_prometheusrule_and_a_servicemonitor() -> None:
    docs = render_in_cluster_serving({}, SERVED)
    assert _kinds(docs) == {"PrometheusRule", "ServiceMonitor"}
    assert "fairprice-prometheus-rules" not in by_kind(docs, "ConfigMap")
    rule = by_kind(docs, "PrometheusRule")["fairprice"]
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    for doc in docs:
        validate_strictly(doc)


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ({"podMonitor": {"enabled": True}}, {"PodMonitor", "PrometheusRule"}),
        ({"podMonitor": {"enabled": "auto"}}, {"PodMonitor", "PrometheusRule"}),
        (
            {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}},
            set(),
        ),
        (
            {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}},
            {"PodMonitor", "PrometheusRule", "ServiceMonitor"},
        ),
    ],
)
def test_values_choose_the_operator_objects(metrics: dict[str, Any], expected: set[str]) -> None:
    assert _kinds(render_in_cluster_serving({"metrics": metrics}, SERVED)) == expected


def test_explicit_values_create_the_objects_without_the_crds_and_labels_reach_them() -> None:
    labels = {"release": "kube-prometheus-stack"}
    metrics = {
        kind: {"enabled": True, "labels": labels}
        for kind in ("serviceMonitor", "podMonitor", "prometheusRule")
    }
    docs = render_chart({"metrics": metrics})
    found = [d for d in docs if d["kind"] in OPERATOR_KINDS]
    assert {d["kind"] for d in found} == set(OPERATOR_KINDS)
    for doc in found:
        assert doc["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        validate_monitoring(doc)
    monitor = by_kind(docs, "PodMonitor")["fairprice"]
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "http"


def test_crd_validation_rejects_what_the_operator_would_refuse() -> None:
    """The check can fail: a field the CRD does not know, and a duration it cannot parse."""
    monitor = by_kind(render_chart({"metrics": {"podMonitor": {"enabled": True}}}), "PodMonitor")
    good = monitor["fairprice"]
    unknown = json.loads(json.dumps(good))
    unknown["spec"]["podMetricsEndpoints"][0]["scrapeEvery"] = "15s"
    bad_interval = json.loads(json.dumps(good))
    bad_interval["spec"]["podMetricsEndpoints"][0]["interval"] = "15 seconds"
    for doc in (unknown, bad_interval):
        with pytest.raises(AssertionError):
            validate_monitoring(doc)


@pytest.mark.parametrize("overlay", ["overlays/dev", "overlays/dev-offline"])
def test_kustomize_ships_the_same_rules_file(overlay: str) -> None:
    rules = by_kind(kustomize(overlay), "ConfigMap")["fairprice-prometheus-rules"]
    assert rules["data"]["fairprice.rules.yaml"].rstrip("\n") == RULES.read_text().rstrip("\n")
    assert (CHART / "files" / "prometheus").resolve() == RULES.parent.resolve()


def test_the_chart_points_the_storer_at_an_existing_alertmanager(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/alerts.md: ``storer.settings.alertmanager.url`` reaches the storer's settings."""
    url = "http://alertmanager-operated.monitoring:9093"
    docs = render_chart({"storer": {"settings": {"alertmanager": {"url": url}}}})
    path = tmp_path / "config.toml"
    path.write_text(by_kind(docs, "ConfigMap")["fairprice-storer"]["data"]["config.toml"])
    storer = by_kind(docs, "Deployment")["fairprice-storer"]
    (container,) = storer["spec"]["template"]["spec"]["containers"]
    for env in container.get("env", []):
        monkeypatch.setenv(env["name"], env.get("value", "from-a-secret"))
    assert load_settings(StorerSettings, path).storer.alertmanager.url == url
