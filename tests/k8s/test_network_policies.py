"""The chart's NetworkPolicies allow exactly the flows the pipeline uses.

The flows used come from the rendered objects themselves: each pod's addresses of NATS,
InfluxDB and the simulator (its ``FAIRPRICE_*`` and Grafana's ``INFLUXDB_URL`` variables),
NATS' cluster routes (its configuration) and the ``helm test`` pod's URLs, each resolved
through its Service to a component and a port. The flows allowed are every in-cluster peer of
every policy rule. The two must be equal for every value set: a policy can neither miss a flow
the pipeline needs nor allow one it does not. Flows with the world (Prometheus, the API's and
Grafana's clients, the exchange, DNS) are checked on their own.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from .conftest import RELEASE, VALUE_SETS, WORKLOAD_KINDS, by_kind, kustomize, render_chart

Flow = tuple[str, str, int]
"""(client component, server component, port)."""

_URL_VARIABLES = (
    "FAIRPRICE_NATS__SERVERS",
    "FAIRPRICE_INFLUX__URL",
    "FAIRPRICE_CRAWLER__REST_URL",
    "FAIRPRICE_CRAWLER__WS_URL",
    "INFLUXDB_URL",
)


def _component(doc: dict[str, Any]) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def _pods(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each component's pod spec."""
    pods = {}
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            spec = doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]
            pods[_component(doc)] = spec
    return pods


def _resolve(docs: list[dict[str, Any]], url: str) -> tuple[str, int] | None:
    """The component and container port behind a URL's Service; None outside the release."""
    parts = urlsplit(url)
    services = by_kind(docs, "Service")
    service = services.get(parts.hostname or "")
    if service is None:
        return None
    component = service["spec"]["selector"]["app.kubernetes.io/component"]
    port = next(p for p in service["spec"]["ports"] if p["port"] == parts.port)
    target = port["targetPort"]
    if isinstance(target, int):
        return component, target
    containers = _pods(docs)[component]["containers"]
    named = {p["name"]: p["containerPort"] for c in containers for p in c.get("ports", [])}
    return component, int(named[target])


def used_flows(docs: list[dict[str, Any]]) -> set[Flow]:
    flows = set()
    for component, pod in _pods(docs).items():
        for container in pod["containers"]:
            urls = []
            for env in container.get("env", []):
                if env["name"] in _URL_VARIABLES and "value" in env:
                    value = env["value"]
                    urls += json.loads(value) if value.startswith("[") else [value]
            urls += re.findall(r"http://\$service:(\d+)/", " ".join(container.get("command", [])))
            for url in urls:
                if url.isdigit():  # the helm test pod: every service's port, by name
                    flows |= _test_pod_flows(docs, component, container, int(url))
                    continue
                target = _resolve(docs, url)
                if target is not None:
                    flows.add((component, *target))
    config = by_kind(docs, "ConfigMap").get(f"{RELEASE}-nats")
    if config is not None and "routes" in config["data"]["nats.conf"]:
        flows.add(("nats", "nats", 6222))
    return flows


def _test_pod_flows(
    docs: list[dict[str, Any]], component: str, container: dict[str, Any], port: int
) -> set[Flow]:
    script = " ".join(container["command"])
    names = re.search(r"for service in (.*?); do", script)
    assert names is not None
    return {
        (component, *target)
        for name in names.group(1).split()
        if (target := _resolve(docs, f"http://{name}:{port}")) is not None
    }


def _selected(selector: dict[str, Any]) -> set[str]:
    """The components a pod selector of the release picks."""
    labels = selector.get("matchLabels", {})
    assert labels.get("app.kubernetes.io/instance") == RELEASE, selector
    if "app.kubernetes.io/component" in labels:
        return {labels["app.kubernetes.io/component"]}
    (expression,) = selector["matchExpressions"]
    assert expression["key"] == "app.kubernetes.io/component"
    assert expression["operator"] == "In"
    return set(expression["values"])


def allowed_flows(docs: list[dict[str, Any]]) -> tuple[set[Flow], list[tuple[str, Any, int]]]:
    """In-cluster flows every policy allows, and the others as (component, peer, port)."""
    inside: set[Flow] = set()
    outside: list[tuple[str, Any, int]] = []
    for policy in by_kind(docs, "NetworkPolicy").values():
        (target,) = _selected(policy["spec"]["podSelector"])
        for rule in policy["spec"].get("ingress", []):
            ports = [p["port"] for p in rule["ports"]]
            for peer in rule.get("from", [None]):
                for port in ports:
                    if peer is not None and set(peer) == {"podSelector"}:
                        inside |= {(c, target, port) for c in _selected(peer["podSelector"])}
                    else:
                        outside.append((target, peer, port))
        for rule in policy["spec"].get("egress", []):
            ports = [p["port"] for p in rule["ports"]]
            for peer in rule.get("to", [None]):
                for port in ports:
                    if peer is not None and set(peer) == {"podSelector"}:
                        inside |= {(target, s, port) for s in _selected(peer["podSelector"])}
                    else:
                        outside.append((f"{target} egress", peer, port))
    return inside, outside


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_policies_allow_exactly_the_flows_the_pipeline_uses(name: str) -> None:
    docs = render_chart(VALUE_SETS[name])
    inside, outside = allowed_flows(docs)
    used = used_flows(docs)
    # The crawler's egress is limited too: its in-cluster flows are in both directions' rules.
    assert inside == used
    assert {_component(p) for p in by_kind(docs, "NetworkPolicy").values()} == set(_pods(docs)) - {
        "test"
    }  # every pod but the test pod's accepts only what a policy says
    for target, peer, port in outside:
        if target == "crawler egress":
            assert port in (53, 443, 9443, 4222), (peer, port)
        elif peer is None:  # anyone: the public ports only
            assert (target, port) in {("api", 8000), ("grafana", 3000)}, (target, port)
        else:  # Prometheus scrapes the services' and NATS' HTTP ports
            assert set(peer) == {"namespaceSelector", "podSelector"}
            assert port in (8080, 8222), (target, port)


def test_crawler_reaches_only_the_exchange_nats_and_dns() -> None:
    docs = render_chart({})
    crawler = by_kind(docs, "NetworkPolicy")[f"{RELEASE}-crawler"]
    assert crawler["spec"]["policyTypes"] == ["Ingress", "Egress"]
    egress = crawler["spec"]["egress"]
    assert [sorted(p["port"] for p in rule["ports"]) for rule in egress] == [
        [53, 53],
        [4222],
        [443, 9443],
    ]
    offline = render_chart({"simulator": {"enabled": True}})
    rules = by_kind(offline, "NetworkPolicy")[f"{RELEASE}-crawler"]["spec"]["egress"]
    assert not any("ipBlock" in peer for rule in rules for peer in rule["to"])


def test_policies_switch_off() -> None:
    assert not by_kind(render_chart({"networkPolicy": {"enabled": False}}), "NetworkPolicy")


@pytest.mark.parametrize(
    ("overlay", "values"), [("overlays/dev", "make-all"), ("overlays/dev-offline", "offline")]
)
def test_kustomize_carries_the_charts_policies(overlay: str, values: str) -> None:
    """The overlays' policies are the chart's (which the flows above check)."""
    chart = {
        name: p["spec"]
        for name, p in by_kind(render_chart(VALUE_SETS[values]), "NetworkPolicy").items()
    }
    kust = {name: p["spec"] for name, p in by_kind(kustomize(overlay), "NetworkPolicy").items()}
    assert kust == chart
