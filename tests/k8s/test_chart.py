"""The Helm chart lints strictly, renders with several value sets, and every object validates
against Kubernetes' schemas offline."""

from __future__ import annotations

import copy
import re
import tarfile
import tomllib
from typing import Any

import helm_python as helm
import pytest

from fairprice.common.settings import ServiceSettings, load_settings

from .conftest import (
    CHART,
    GRAFANA,
    NAMESPACE,
    RELEASE,
    SERVICES,
    VALUE_SETS,
    by_kind,
    load_values_script,
    render_chart,
    validate_strictly,
)


def test_chart_lints_strictly_with_no_finding_above_info() -> None:
    for values in VALUE_SETS.values():
        report = helm.lint(str(CHART), values, strict=True, kube_version="v1.30.0")
        assert report["errors"] == []
        serious = [m for m in report["messages"] if m["severity"] >= 2]
        assert serious == [], serious


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_chart_renders_and_validates_strictly(name: str) -> None:
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(VALUE_SETS[name])
    docs = render_chart(VALUE_SETS[name])
    assert len(docs) > 10
    for doc in docs:
        validate_strictly(doc)
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "two objects share a kind and name"


@pytest.mark.parametrize(
    "bad",
    [
        {"crawler": {"replicaCount": "two"}},
        {"crawlr": {}},
        {"nats": {"cluster": {"replicas": 2}}},
        {"storer": {"autoscaling": {"enabled": "yes"}}},
        {"grafana": {"service": {"type": "Ingress"}}},
        {"converter": {"image": {"repository": ""}}},
    ],
)
def test_values_schema_rejects_bad_values(bad: dict[str, Any]) -> None:
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmError):
        chart.validate_schema(bad)


def test_every_service_is_a_scalable_deployment_with_a_pdb() -> None:
    """`kubectl scale deployment/<service>` is the lever: Deployments, no ordinals."""
    docs = render_chart({})
    deployments = by_kind(docs, "Deployment")
    for service in SERVICES:
        assert f"{RELEASE}-{service}" in deployments
    assert not {f"{RELEASE}-{s}" for s in SERVICES} & set(by_kind(docs, "StatefulSet"))
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert {f"{RELEASE}-{s}" for s in ("crawler", "converter", "storer")} <= set(pdbs)
    assert not by_kind(docs, "HorizontalPodAutoscaler")


def test_ha_values_give_a_three_node_nats_with_replicated_streams_and_hpas() -> None:
    docs = render_chart(VALUE_SETS["ha"])
    nats = by_kind(docs, "StatefulSet")[f"{RELEASE}-nats"]
    assert nats["spec"]["replicas"] == 3
    conf = by_kind(docs, "ConfigMap")[f"{RELEASE}-nats"]["data"]["nats.conf"]
    assert conf.count(f"nats://{RELEASE}-nats-") == 3 and "cluster {" in conf
    for service in SERVICES:
        env = _env(by_kind(docs, "Deployment")[f"{RELEASE}-{service}"])
        assert env["FAIRPRICE_NATS__STREAMS__REPLICAS"] == "3"
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == {f"{RELEASE}-converter", f"{RELEASE}-storer"}
    assert "replicas" not in by_kind(docs, "Deployment")[f"{RELEASE}-storer"]["spec"]
    assert f"{RELEASE}-nats" in by_kind(docs, "PodDisruptionBudget")


def test_external_nats_influxdb_and_grafana_replace_the_bundled_ones() -> None:
    docs = render_chart(VALUE_SETS["external"])
    assert not by_kind(docs, "StatefulSet")
    assert f"{RELEASE}-grafana" not in by_kind(docs, "Deployment")
    storer = _env(by_kind(docs, "Deployment")[f"{RELEASE}-storer"])
    assert storer["FAIRPRICE_NATS__SERVERS"] == '["nats://nats.messaging:4222"]'
    assert storer["FAIRPRICE_INFLUX__URL"] == "http://influxdb.monitoring:8086"
    assert storer["FAIRPRICE_INFLUX__PASSWORD"] == {
        "secretKeyRef": {"name": "influx-credentials", "key": "storer-password"}
    }
    dashboards = by_kind(docs, "ConfigMap")[f"{RELEASE}-grafana-dashboards"]
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_missing_external_addresses_fail_the_render() -> None:
    with pytest.raises(helm.HelmError, match="nats.servers is required"):
        render_chart({"nats": {"enabled": False}})


def test_offline_values_bundle_the_simulator_and_point_the_crawler_at_it() -> None:
    docs = render_chart(VALUE_SETS["offline"])
    assert f"{RELEASE}-simulator" in by_kind(docs, "Deployment")
    crawler = _env(by_kind(docs, "Deployment")[f"{RELEASE}-crawler"])
    assert crawler["FAIRPRICE_CRAWLER__EXCHANGE"] == "sim"
    assert crawler["FAIRPRICE_CRAWLER__REST_URL"] == f"http://{RELEASE}-simulator:8090"
    assert crawler["FAIRPRICE_CRAWLER__WS_URL"] == f"ws://{RELEASE}-simulator:8090"


def test_settings_become_the_toml_configmap_named_by_fairprice_config() -> None:
    values = copy.deepcopy(VALUE_SETS["make-all"])
    values["storer"]["settings"] = {
        "batch": {"max_points": 5000, "flush_s": 0.25, "tags": ["a", "b"]},
        "name with space": 'x"y',
        "inline": [{"k": 1}],
    }
    docs = render_chart(values)
    for service in SERVICES:
        deployment = by_kind(docs, "Deployment")[f"{RELEASE}-{service}"]
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert _env(deployment)["FAIRPRICE_CONFIG"] == "/etc/fairprice/config.toml"
        mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
        volume = next(v for v in pod["volumes"] if v["name"] == "config")
        assert mount["mountPath"] == "/etc/fairprice"
        assert volume["configMap"]["name"] == f"{RELEASE}-{service}"
        config = _config(docs, service)
        assert config[service]["http"]["port"] == 8080
        assert config["log"]["format"] == "json"
    storer = _config(docs, "storer")
    assert storer["storer"]["batch"] == {"max_points": 5000, "flush_s": 0.25, "tags": ["a", "b"]}
    assert storer["storer"]["name with space"] == 'x"y'
    assert storer["storer"]["inline"] == [{"k": 1}]
    replicas = storer["nats"]["streams"]["replicas"]
    assert replicas == 1 and isinstance(replicas, int), "whole numbers stay integers"


def test_helm_test_pod_checks_every_service_readyz() -> None:
    docs = render_chart(VALUE_SETS["offline"])
    pods = [d for d in docs if d["kind"] == "Pod"]
    (test_pod,) = pods
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = test_pod["spec"]["containers"][0]["command"][-1]
    assert "/readyz" in script
    services = {n for n, s in by_kind(docs, "Service").items() if _has_port(s, 8080)}
    assert services == {f"{RELEASE}-{s}" for s in (*SERVICES, "simulator")}
    for service in services:
        assert f"{service} " in script


def test_operator_rbac_is_least_privilege() -> None:
    docs = render_chart({})
    role = by_kind(docs, "Role")[f"{RELEASE}-operator"]
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == {
        ("fairprice.io", "marketfeeds", verb) for verb in ("get", "list", "watch", "patch")
    } | {
        ("fairprice.io", "marketfeeds/status", "patch"),
        ("", "events", "create"),
    }
    assert not by_kind(docs, "ClusterRole")  # standalone kopf with CRD scanning off
    for doc in docs:
        for rule in doc.get("rules", []):
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
    operator = by_kind(docs, "Deployment")[f"{RELEASE}-operator"]["spec"]["template"]["spec"]
    assert operator["serviceAccountName"] == f"{RELEASE}-operator"
    others = [d for n, d in by_kind(docs, "Deployment").items() if n != f"{RELEASE}-operator"]
    assert all(not d["spec"]["template"]["spec"]["automountServiceAccountToken"] for d in others)


_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_jetstream_store_holds_every_streams_max_bytes(name: str, tmp_path: Any) -> None:
    """JetStream reserves each stream's max_bytes up front: a store smaller than their sum
    makes the services' stream creation fail with insufficient resources."""
    docs = render_chart(VALUE_SETS[name])
    if f"{RELEASE}-nats" not in by_kind(docs, "ConfigMap"):
        return  # an external NATS
    conf = by_kind(docs, "ConfigMap")[f"{RELEASE}-nats"]["data"]["nats.conf"]
    store = re.search(r"max_file_store: (\d+)([KMGT])", conf)
    assert store, conf
    path = tmp_path / "config.toml"
    path.write_text(by_kind(docs, "ConfigMap")[f"{RELEASE}-storer"]["data"]["config.toml"])
    streams = load_settings(ServiceSettings, path).nats.streams
    needed = sum(getattr(streams, s).max_bytes for s in ("books", "prices", "signals", "candles"))
    assert int(store.group(1)) * _UNITS[store.group(2)] > needed


def test_generated_passwords_are_not_empty_and_explicit_ones_are_kept() -> None:
    docs = render_chart({"influxdb": {"auth": {"password": "s3cret"}}})
    secrets = by_kind(docs, "Secret")
    assert secrets[f"{RELEASE}-influxdb"]["data"]["password"] == "czNjcmV0"
    assert len(secrets[f"{RELEASE}-grafana"]["data"]["admin-password"]) >= 24


def test_notes_tell_how_to_reach_grafana() -> None:
    with helm.Chart.load(str(CHART)) as chart:
        notes = chart.render({}, name=RELEASE, namespace=NAMESPACE)["fairprice/templates/NOTES.txt"]
    assert f"port-forward svc/{RELEASE}-grafana 3000:3000" in notes
    assert f"secret {RELEASE}-grafana" in notes


def _env(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _config(docs: list[dict[str, Any]], service: str) -> dict[str, Any]:
    text = by_kind(docs, "ConfigMap")[f"{RELEASE}-{service}"]["data"]["config.toml"]
    return tomllib.loads(text)


def _has_port(service: dict[str, Any], port: int) -> bool:
    return any(p["port"] == port for p in service["spec"]["ports"])


def test_packaged_chart_carries_the_linked_dashboards_and_crd(tmp_path: Any) -> None:
    """Helm follows the links into grafana/ and k8s/: a packaged chart is self-contained."""
    archive = helm.package(str(CHART), destination=str(tmp_path))
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
        market = tar.extractfile(members["fairprice/files/grafana/dashboards/market.json"])
        assert market is not None
        assert market.read() == (GRAFANA / "dashboards" / "market.json").read_bytes()
    assert "fairprice/crds/marketfeeds.fairprice.io.yaml" in members
    assert all(not m.issym() for m in members.values())


def test_make_all_values_leave_out_loopback_addresses_of_local_runs() -> None:
    config = {
        "nats": {"servers": ["nats://127.0.0.1:4222"], "streams": {"replicas": 1}},
        "crawler": {"rest_url": "http://127.0.0.1:8090", "symbols": ["BTCUSDT"]},
        "simulator": {"host": "127.0.0.1", "api": {"url": "ws://localhost:8090/ws"}},
        "storer": {"batch": 500, "note": "127.0.0.10 is not an address here"},
    }
    dropped: list[str] = []
    values = load_values_script().chart_values(config, dropped)
    assert sorted(dropped) == ["crawler.rest_url", "simulator.api.url", "simulator.host"]
    assert values["crawler"]["settings"] == {"symbols": ["BTCUSDT"]}
    assert values["settings"]["nats"] == {"streams": {"replicas": 1}}
    assert values["storer"]["settings"]["batch"] == 500


def test_api_token_from_a_secret_and_hpa_option() -> None:
    """The price API: its port, no token by default; a named Secret becomes
    FAIRPRICE_API__TOKEN; autoscaling makes an HPA and leaves replicas to it."""
    default = by_kind(render_chart({}), "Deployment")[f"{RELEASE}-api"]
    env = _env(default)
    assert env["FAIRPRICE_API__PORT"] == "8000"
    assert "FAIRPRICE_API__TOKEN" not in env
    values = {
        "api": {
            "auth": {"existingSecret": "api-token"},
            "autoscaling": {"enabled": True, "maxReplicas": 5},
        }
    }
    docs = render_chart(values)
    api = by_kind(docs, "Deployment")[f"{RELEASE}-api"]
    assert _env(api)["FAIRPRICE_API__TOKEN"] == {
        "secretKeyRef": {"name": "api-token", "key": "token"}
    }
    assert "replicas" not in api["spec"]
    hpa = by_kind(docs, "HorizontalPodAutoscaler")[f"{RELEASE}-api"]
    assert hpa["spec"]["maxReplicas"] == 5
    service = by_kind(docs, "Service")[f"{RELEASE}-api"]
    assert {"name": "api", "port": 8000, "targetPort": "api"} in service["spec"]["ports"]
    assert not any(d["metadata"]["name"].endswith("-api") for d in render_chart(
        {"api": {"enabled": False}}
    ) if d["kind"] in ("Deployment", "Service"))  # fmt: skip
