#!/usr/bin/env python3
"""Turn clusters_dev.toml, the one source of the dev configuration, into the Helm chart's values.

`make all` (scripts/cluster.sh) runs it: the [kubernetes] section gives replicas, resources,
image registry and tag; the service sections (crawler, converter, ...) become each service's
`settings`, the shared sections (log, nats, influx) the chart's `settings`. Addresses of NATS
and InfluxDB and every credential are left out: in the cluster the chart sets them; so is any
other value holding a loopback address (a local simulator URL, a 127.0.0.1 bind host).

    python3 scripts/k8s_values.py [--config clusters_dev.toml] [--out values.json]
    python3 scripts/k8s_values.py --get kubernetes.namespace      # one value, for shell scripts

The output is JSON, which Helm reads as YAML. Standard library only (runs before `uv sync`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

__all__ = ["chart_values", "main"]

SERVICES = ("crawler", "converter", "storer", "operator", "api", "simulator")
# Keys that the chart sets for the cluster (addresses, secrets, the HTTP port): never copied.
_CLUSTER_OWNED = {
    "nats": {"servers", "user", "password", "token", "creds_file", "tls_ca_file"},
    "influx": {"url", "username", "password", "token", "database"},
}


_LOOPBACK = re.compile(r"(^|[/@\[])(127\.\d+\.\d+\.\d+|localhost|\[?::1\]?)([:/\]]|$)")


def _without(section: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if k not in keys}


def _is_local(value: Any) -> bool:
    if isinstance(value, str):
        return bool(_LOOPBACK.search(value))
    if isinstance(value, list):
        return any(_is_local(item) for item in value)
    return False


def _cluster_safe(section: dict[str, Any], path: str, dropped: list[str]) -> dict[str, Any]:
    """The section without loopback addresses (a local run's simulator URL, a 127.0.0.1 bind
    host): in a pod they point at the pod itself, so the service default applies instead."""
    kept: dict[str, Any] = {}
    for key, value in section.items():
        if isinstance(value, dict):
            kept[key] = _cluster_safe(value, f"{path}.{key}", dropped)
        elif _is_local(value):
            dropped.append(f"{path}.{key}")
        else:
            kept[key] = value
    return kept


def chart_values(config: dict[str, Any], dropped: list[str] | None = None) -> dict[str, Any]:
    """The chart values for a parsed clusters_dev.toml; the keys left out because they hold
    loopback addresses are appended to ``dropped``."""
    dropped = [] if dropped is None else dropped
    config = {
        name: _cluster_safe(_without(section, _CLUSTER_OWNED.get(name, set())), name, dropped)
        if name != "kubernetes"
        else section
        for name, section in config.items()
    }
    kube = config.get("kubernetes", {})
    image = kube.get("image", {})
    values: dict[str, Any] = {
        "image": {
            "registry": image.get("registry", ""),
            "tag": image.get("tag", "dev"),
            "pullPolicy": image.get("pull_policy", "IfNotPresent"),
        },
        "settings": {name: config[name] for name in ("log", "nats", "influx") if name in config},
    }
    values["settings"].setdefault("log", {})["format"] = "json"
    if "database" in config.get("influx", {}):
        values["influxdb"] = {"database": config["influx"]["database"]}
    for service in SERVICES:
        own = kube.get(service, {})
        block: dict[str, Any] = {"settings": _without(config.get(service, {}), {"http"})}
        if "replicas" in own and service != "operator":
            block["replicaCount"] = own["replicas"]
        if "resources" in own:
            block["resources"] = own["resources"]
        values[service] = block
    values["simulator"]["enabled"] = bool(kube.get("offline", False))
    for name, key in (("nats", "nats"), ("influxdb", "influxdb"), ("grafana", "grafana")):
        own = kube.get(key, {})
        block = values.setdefault(name, {})
        if "resources" in own:
            block["resources"] = own["resources"]
        if "storage" in own:
            block["persistence"] = {"size": own["storage"]}
    return values


def _get(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = value[part]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("clusters_dev.toml"))
    parser.add_argument("--out", type=Path, help="write here instead of standard output")
    parser.add_argument(
        "--get", metavar="KEY", help="print one value of the config, e.g. kubernetes.namespace"
    )
    args = parser.parse_args(argv)
    config = tomllib.loads(args.config.read_text())
    if args.get:
        print(_get(config, args.get))
        return 0
    dropped: list[str] = []
    text = json.dumps(chart_values(config, dropped), indent=2) + "\n"
    for key in dropped:
        print(
            f"k8s_values: left out {key}: a loopback address means nothing in a pod",
            file=sys.stderr,
        )
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
