"""The chart's other value sets and the kustomize overlays, run by the harness until Ready.

The online ones crawl Binance, which pods here cannot reach (the harness's pods resolve only
cluster names, and this machine has no internet): their crawler runs, stays not Ready (its
/readyz waits for synced books) and `helm test` names exactly it. Everything else must be
Ready. The existing-NATS/InfluxDB set gets a real nats-server and influxd outside the cluster
and the user's Secret of InfluxDB credentials, as its values expect."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from fairprice.common.testing import InfluxServer, NatsServer, run_influxd, run_nats

from .conftest import RELEASE, VALUE_SETS, chart_crds, kustomize, render_chart
from .harness import Cluster

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.asyncio(loop_scope="module"),
]

CRAWLER = f"{RELEASE}-crawler"
READY_WITHIN_S = 90.0
ONLINE = {"defaults": True, "external": True, "dev": True, "dev-offline": False}
"""The renderings run here, and whether each crawls Binance (online)."""


def _external(nats: NatsServer, influx: InfluxServer) -> list[dict[str, Any]]:
    values = copy.deepcopy(VALUE_SETS["external"])
    values["nats"]["servers"] = [nats.url]
    values["influxdb"]["url"] = influx.url
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": values["influxdb"]["auth"]["existingSecret"]},
        "stringData": {
            "username": "fairprice",
            "password": "theirs",
            "storer-password": "storer-theirs",
            "reader-password": "reader-theirs",
        },
    }
    return [*render_chart(values), secret]


async def _settle(cluster: Cluster, online: bool) -> None:
    """Every pod Ready but an online crawler (which runs, not Ready); `helm test` names
    exactly it."""

    def settled() -> bool:
        others = [p for p in cluster.running_pods() if p.workload != CRAWLER]
        crawlers = cluster.pods_of(CRAWLER)
        crawling = all(p.ready != online and p.running for p in crawlers)
        return bool(others) and all(p.ready for p in others) and bool(crawlers) and crawling

    await cluster.until(settled, READY_WITHIN_S, "every pod but an online crawler Ready")
    ready = sorted(p.workload for p in cluster.running_pods() if p.ready)
    print(f"\nReady: {ready}", file=sys.stderr)
    if any(t.hook == "test" for t in cluster.templates.values()):
        ((phase, log),) = (await cluster.run_hooks("test")).values()
        print(f"helm test: {phase}\n{log}", file=sys.stderr)
        assert ("NOT READY" in log) == online
        assert [line for line in log.splitlines() if "NOT READY" in line] == (
            [f"NOT READY: {CRAWLER}"] if online else []
        )
        assert phase == ("Failed" if online else "Succeeded")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[dict[str, Cluster | BaseException]]:
    """Every rendering run at once (each its own cluster, as separate namespaces would be):
    most of a run is waiting for probes, so together they take little longer than one. The
    existing-NATS/InfluxDB set gets a real nats-server and influxd outside the cluster, as
    its values expect. Each test then looks at its own run."""
    async with contextlib.AsyncExitStack() as stack:
        nats = await stack.enter_async_context(run_nats(tmp_path_factory.mktemp("nats")))
        influx = await stack.enter_async_context(run_influxd(tmp_path_factory.mktemp("influxd")))
        docs = {
            "defaults": render_chart(VALUE_SETS["defaults"]),
            "external": _external(nats, influx),
            "dev": kustomize("overlays/dev"),
            "dev-offline": kustomize("overlays/dev-offline"),
        }
        clusters = {}
        for name in ONLINE:  # stopped in reverse order: kmock's API servers nest
            cluster = Cluster(
                docs[name], tmp_path_factory.mktemp(name), crds=chart_crds(), teardown_grace=0
            )
            clusters[name] = await stack.enter_async_context(cluster)
        settled = await asyncio.gather(
            *(_settle(clusters[name], online) for name, online in ONLINE.items()),
            return_exceptions=True,
        )
    yield {
        name: clusters[name] if failed is None else failed
        for name, failed in zip(ONLINE, settled, strict=True)
    }


def _run(runs: dict[str, Cluster | BaseException], name: str) -> Cluster:
    result = runs[name]
    if isinstance(result, BaseException):
        raise result
    return result


async def test_default_values_are_ready_but_the_crawler(
    runs: dict[str, Cluster | BaseException],
) -> None:
    _run(runs, "defaults")


async def test_existing_nats_and_influxdb_values_are_ready_but_the_crawler(
    runs: dict[str, Cluster | BaseException],
) -> None:
    cluster = _run(runs, "external")
    assert not {f"{RELEASE}-nats", f"{RELEASE}-influxdb"} & set(cluster.templates)


@pytest.mark.parametrize("overlay", ["dev", "dev-offline"])
async def test_kustomize_overlays_are_ready(
    overlay: str, runs: dict[str, Cluster | BaseException]
) -> None:
    _run(runs, overlay)
