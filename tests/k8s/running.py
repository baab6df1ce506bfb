"""What the harness tests share: a cluster of rendered manifests, and the addresses a test
reaches it by from outside (as ``kubectl port-forward`` would: a pod's own address)."""

from __future__ import annotations

import contextlib
import os
import sys
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from fairprice.api.settings import ApiSettings
from fairprice.common.bus import Bus, connect_bus
from fairprice.common.settings import NatsSettings, ServiceSettings, load_settings
from fairprice.common.testing import eventually
from fairprice.converter.settings import ConverterSettings
from fairprice.crawler.settings import CrawlerSettings
from fairprice.operator.settings import OperatorSettings
from fairprice.simulator.settings import SimulatorSettings
from fairprice.storer.settings import StorerSettings

from ..e2e.conftest import Audit, Lake, Window, audit_until_clean, now_ms
from .conftest import NAMESPACE, RELEASE
from .harness import Cluster, Manifests, container_env
from .harness.images import repository
from .harness.manifests import write_volume

__all__ = [
    "RECOVERY_VALUES",
    "SETTINGS",
    "audit_since",
    "fair_price_counts",
    "influx_url",
    "load_pod_settings",
    "nats_settings",
    "nats_url",
    "reach",
    "running_cluster",
]

READY_WITHIN_S = 90.0
SETTINGS: dict[str, type[ServiceSettings]] = {
    "fairprice-api": ApiSettings,
    "fairprice-crawler": CrawlerSettings,
    "fairprice-converter": ConverterSettings,
    "fairprice-storer": StorerSettings,
    "fairprice-operator": OperatorSettings,
    "fairprice-sim": SimulatorSettings,
}


@contextlib.asynccontextmanager
async def running_cluster(
    docs: list[dict[str, Any]], workdir: Path, title: str, **kwargs: Any
) -> AsyncIterator[Cluster]:
    """The cluster of ``docs`` with every pod that runs here Ready (prints how long it took);
    killed at once when it ends (what is checked is checked before)."""
    async with Cluster(docs, workdir, teardown_grace=0, **kwargs) as cluster:
        took = await cluster.wait_ready(READY_WITHIN_S)
        print(f"\n{title}: every pod Ready in {took:.1f} s", file=sys.stderr)
        yield cluster


def nats_url(cluster: Cluster) -> str:
    pod = cluster.pods_of(f"{RELEASE}-nats")[0]
    return f"nats://{pod.address}:4222"


def influx_url(cluster: Cluster, secret: str = f"{RELEASE}-influxdb") -> str:
    """The InfluxDB pod's URL with the credentials of the chart's Secret."""
    data = cluster.manifests.data("Secret", secret) or {}
    user = urllib.parse.quote(data["username"].decode())
    password = urllib.parse.quote(data["password"].decode())
    pod = cluster.pods_of(f"{RELEASE}-influxdb")[0]
    return f"http://{user}:{password}@{pod.address}:8086"


def nats_settings(cluster: Cluster, address: str | None = None) -> NatsSettings:
    """The cluster's NATS (the first node, or the one at ``address``) as the storer's user,
    the one that reads every data stream, with its password from the chart's Secret."""
    data = cluster.manifests.data("Secret", f"{RELEASE}-nats-users") or {}
    return NatsSettings(
        servers=[f"nats://{address}:4222" if address else nats_url(cluster)],
        reconnect_wait_s=0.2,
        user="storer",
        password=SecretStr(data["storer"].decode()),
    )


@contextlib.asynccontextmanager
async def reach(cluster: Cluster) -> AsyncIterator[Bus]:
    async with connect_bus(nats_settings(cluster), name="k8s-test") as bus:
        yield bus


async def fair_price_counts(url: str, database: str = "fair_price") -> dict[str, int]:
    """Points of ``fair_price`` per symbol."""
    query = 'SELECT count("price") FROM "fair_price" GROUP BY "symbol"'
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url + "/query", params={"db": database, "q": query})
    response.raise_for_status()
    counts = {}
    for result in response.json().get("results", []):
        for series in result.get("series", []):
            counts[series["tags"]["symbol"]] = int(series["values"][0][1])
    return counts


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = {k: v for k, v in os.environ.items() if k.startswith("FAIRPRICE_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    try:
        yield
    finally:
        for key in env:
            os.environ.pop(key, None)
        os.environ.update(saved)


def load_pod_settings(
    docs: list[dict[str, Any]], workload: str, root: Path, cls: type[ServiceSettings] | None = None
) -> tuple[type[ServiceSettings], ServiceSettings]:
    """The settings the service in ``workload``'s pod loads (or ``cls``): its config file
    written where its volume mount puts it (under ``root``), its environment resolved."""
    manifests = Manifests(NAMESPACE, list(docs))
    (template,) = (t for t in manifests.templates() if t.name == workload)
    (container,) = template.spec["containers"]
    cls = cls or SETTINGS[repository(container["image"])]
    fields = {"metadata.name": f"{workload}-0", "metadata.namespace": NAMESPACE}
    fields["status.podIP"] = "10.0.0.1"
    env = container_env(container, manifests, fields)
    config = Path(env["FAIRPRICE_CONFIG"])
    volumes = {v["name"]: v for v in template.spec["volumes"]}
    for mount in container["volumeMounts"]:
        if config.is_relative_to(mount["mountPath"]):
            directory = root / mount["mountPath"].lstrip("/")
            directory.mkdir(parents=True)
            write_volume(volumes[mount["name"]], manifests, directory)
    path = root / config.relative_to("/")
    with _environment({**env, "FAIRPRICE_CONFIG": str(path)}):
        return cls, load_settings(cls, path)


RECOVERY_VALUES: dict[str, Any] = {
    "simulator": {"enabled": True},
    "operator": {"enabled": False},
    "settings": {"log": {"format": "json"}, "nats": {"reconnect_wait_s": 0.2}},
    "crawler": {
        "settings": {
            "publish_every_event": True,
            "heartbeat_s": 0.5,
            "member_ttl_s": 2,
            "handoff_s": 1,
            "reconnect_base_s": 0.1,
            "snapshot_retry_base_s": 0.1,
            "snapshot_retry_max_s": 1,
        }
    },
    "converter": {
        "settings": {
            "sma_fast_s": 1,
            "sma_slow_s": 3,
            "heartbeat_s": 0.5,
            "member_ttl_s": 2,
            "replay_margin_s": 5,
        }
    },
    # A message delivered to a killed storer comes back after ack_wait_s (default 60 s).
    "storer": {"settings": {"ack_wait_s": 3, "max_delay_s": 0.1, "influx_ping_s": 0.5}},
}
"""The offline values, set through the chart's own settings values for quick recovery (as an
operator tuning a cluster would): shorter heartbeats, ack wait and SMA windows."""


async def audit_since(
    cluster: Cluster, bus: Bus, lake: Lake, start_ms: int, title: str, within: float = 90.0
) -> Audit:
    """tests/e2e's audit of everything since ``start_ms``, once the window closed and the
    pipeline caught up."""
    end = now_ms()
    await eventually(lambda: now_ms() > end + 1_000, within=5, what="window closed")
    return await audit_until_clean(
        lake, bus, influx_url(cluster), Window(start_ms, end), within=within, title=title
    )
