"""Grafana for local runs: started only when a ``grafana-server``/``grafana`` binary exists.

It is provisioned from the repository's ``grafana/`` folder as it is (the same files the Helm
chart and kustomize use): the InfluxDB datasource and the dashboard provider, with the
dashboards read from ``grafana/dashboards``. Its data lives in the run's state folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fairprice.cli.supervisor import ServiceSpec

__all__ = ["GRAFANA_DIR", "grafana_spec"]

GRAFANA_DIR = Path(__file__).resolve().parents[4] / "grafana"
_HOMEPATHS = (Path("/usr/share/grafana"), Path("/usr/local/share/grafana"))


def grafana_spec(
    state: Path,
    influx_url: str,
    database: str,
    *,
    user: str = "",
    password: str = "",
    port: int = 3000,
) -> ServiceSpec | None:
    """How to start Grafana here (reading InfluxDB as ``user``), or None when it is not
    installed."""
    binary = shutil.which("grafana-server") or shutil.which("grafana")
    home = next((p for p in _HOMEPATHS if p.is_dir()), None)
    if binary is None or home is None or not GRAFANA_DIR.is_dir():
        return None
    provisioning = state / "provisioning"
    for kind, name in (("datasources", "influxdb.yaml"), ("dashboards", "fairprice.yaml")):
        (provisioning / kind).mkdir(parents=True, exist_ok=True)
        shutil.copy(GRAFANA_DIR / "provisioning" / kind / name, provisioning / kind / name)
    for kind in ("plugins", "alerting"):
        (provisioning / kind).mkdir(exist_ok=True)
    argv = [binary] if binary.endswith("grafana-server") else [binary, "server"]
    env = {
        "GF_PATHS_HOME": str(home),
        "GF_PATHS_DATA": str(state / "data"),
        "GF_PATHS_LOGS": str(state / "logs"),
        "GF_PATHS_PROVISIONING": str(provisioning),
        "GF_SERVER_HTTP_ADDR": "127.0.0.1",
        "GF_SERVER_HTTP_PORT": str(port),
        "GF_AUTH_ANONYMOUS_ENABLED": "true",
        "GF_ANALYTICS_REPORTING_ENABLED": "false",
        "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
        "INFLUXDB_URL": influx_url,
        "INFLUXDB_DATABASE": database,
        "INFLUXDB_USER": user,
        "INFLUXDB_PASSWORD": password,
        "DASHBOARDS_DIR": str(GRAFANA_DIR / "dashboards"),
    }
    return ServiceSpec("grafana", [*argv, "--homepath", str(home)], env)
