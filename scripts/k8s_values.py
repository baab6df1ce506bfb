#!/usr/bin/env python3
"""Turn clusters_dev.toml, the one source of the dev configuration, into the Helm chart's values.

`make all` (scripts/cluster.sh) runs it: the [kubernetes] section gives replicas, resources,
image registry and tag; the service sections (crawler, converter, ...) become each service's
`settings`, the shared sections (log, nats, influx) the chart's `settings`. Addresses of NATS
and InfluxDB and every credential are left out: in the cluster the chart sets them.

    python3 scripts/k8s_values.py [--config clusters_dev.toml] [--out values.json]
    python3 scripts/k8s_values.py --get kubernetes.namespace      # one value, for shell scripts

The output is JSON, which Helm reads as YAML. Standard library only (runs before `uv sync`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

__all__ = ["chart_values", "main"]

SERVICES = ("crawler", "converter", "storer", "operator", "simulator")
# Keys that the chart sets for the cluster (addresses, secrets, the HTTP port): never copied.
_CLUSTER_OWNED = {
    "nats": {"servers", "user", "password", "token", "creds_file"},
    "influx": {"url", "username", "password", "token", "database"},
}


def _without(section: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if k not in keys}


def chart_values(config: dict[str, Any]) -> dict[str, Any]:
    """The chart values for a parsed clusters_dev.toml."""
    kube = config.get("kubernetes", {})
    image = kube.get("image", {})
    values: dict[str, Any] = {
        "image": {
            "registry": image.get("registry", ""),
            "tag": image.get("tag", "dev"),
            "pullPolicy": image.get("pull_policy", "IfNotPresent"),
        },
        "settings": {
            name: _without(config[name], _CLUSTER_OWNED.get(name, set()))
            for name in ("log", "nats", "influx")
            if name in config
        },
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
    text = json.dumps(chart_values(config), indent=2) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
