"""The chart's other value sets and the kustomize overlays, run by the harness until Ready.

The online ones crawl Binance, which pods here cannot reach (the harness's pods resolve only
cluster names, and this machine has no internet): their crawler runs, stays not Ready (its
/readyz waits for synced books) and `helm test` names exactly it. Everything else must be
Ready. The existing-NATS/InfluxDB set gets a real nats-server and influxd outside the cluster
and the user's Secret of InfluxDB credentials, as its values expect."""

from __future__ import annotations

import copy
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from fairprice.common.testing import InfluxServer, NatsServer, run_influxd, run_nats

from .conftest import RELEASE, VALUE_SETS, chart_crds, kustomize, render_chart
from .harness import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]

CRAWLER = f"{RELEASE}-crawler"
READY_WITHIN_S = 90.0


@pytest_asyncio.fixture
async def outside(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[NatsServer, InfluxServer]]:
    """An existing NATS and InfluxDB, as the `external` values point at."""
    async with (
        run_nats(tmp_path_factory.mktemp("nats")) as nats,
        run_influxd(tmp_path_factory.mktemp("influxd")) as influx,
    ):
        yield nats, influx


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


async def _run_until_ready(docs: list[dict[str, Any]], workdir: Any, online: bool) -> Cluster:
    async with Cluster(docs, workdir, crds=chart_crds(), teardown_grace=0) as cluster:

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
        return cluster


async def test_default_values_are_ready_but_the_crawler(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    docs = render_chart(VALUE_SETS["defaults"])
    await _run_until_ready(docs, tmp_path_factory.mktemp("defaults"), True)


async def test_existing_nats_and_influxdb_values_are_ready_but_the_crawler(
    outside: tuple[NatsServer, InfluxServer], tmp_path_factory: pytest.TempPathFactory
) -> None:
    cluster = await _run_until_ready(_external(*outside), tmp_path_factory.mktemp("external"), True)
    assert not {f"{RELEASE}-nats", f"{RELEASE}-influxdb"} & set(cluster.templates)


@pytest.mark.parametrize(("overlay", "online"), [("dev", True), ("dev-offline", False)])
async def test_kustomize_overlays_are_ready(
    overlay: str, online: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    docs = kustomize(f"overlays/{overlay}")
    await _run_until_ready(docs, tmp_path_factory.mktemp(overlay), online)
