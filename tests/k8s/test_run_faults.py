"""Pods of the offline chart killed and scaled the Kubernetes way while data flows: SIGKILL of
the crawler, converter and storer containers at once (the harness restarts each per its pod's
restartPolicy, Always), then replicas 1 -> 3 -> 1 of all three; after each, tests/e2e's audit
of everything since the module started finds nothing lost and nothing duplicated.

One cluster serves the module (RECOVERY_VALUES: the offline values with quicker recovery
settings); figures are printed (run with ``-s``)."""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from fairprice.common.bus import Bus
from fairprice.common.testing import eventually

from ..e2e.conftest import Lake, now_ms, wait_books
from .conftest import RELEASE, render_chart
from .harness import Cluster
from .running import RECOVERY_VALUES, audit_since, reach, running_cluster

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.asyncio(loop_scope="module"),
]

STAGES = ("crawler", "converter", "storer")


@dataclass
class Rig:
    cluster: Cluster
    bus: Bus
    lake: Lake
    start_ms: int


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    docs = render_chart(RECOVERY_VALUES)
    workdir = tmp_path_factory.mktemp("faults")
    async with running_cluster(docs, workdir, "offline values for faults") as cluster:
        async with reach(cluster) as bus:
            start_ms = now_ms()
            await wait_books(bus, 200)
            yield Rig(cluster, bus, Lake(), start_ms)


async def test_sigkilled_containers_restart_and_lose_nothing(rig: Rig) -> None:
    """The three containers killed at once (each restart waits for probes; one after the
    other they took three times as long, and at once is the harder case)."""
    killed = []
    for stage in STAGES:
        (pod,) = rig.cluster.pods_of(f"{RELEASE}-{stage}")
        (container,) = pod.containers
        killed.append((pod, container, container.restarts))
        container.kill(signal.SIGKILL)
    for pod, container, before in killed:

        def back() -> bool:
            return container.restarts == before + 1 and pod.ready  # noqa: B023

        await eventually(back, within=60, interval=0.1, what=f"{pod.name} restarted and Ready")
        assert container.last_exit_code == -signal.SIGKILL
        print(
            f"\n{pod.name}: SIGKILL (exit {container.last_exit_code}), restarted "
            f"(restarts {container.restarts}), Ready again",
            file=sys.stderr,
        )
    await wait_books(rig.bus, 100)
    audit = await audit_since(rig.cluster, rig.bus, rig.lake, rig.start_ms, "after SIGKILLs")
    assert audit.figures["fair_price points"] > 0


async def test_scaling_one_three_one_loses_nothing(rig: Rig) -> None:
    for replicas in (3, 1):
        for stage in STAGES:
            await rig.cluster.scale(f"{RELEASE}-{stage}", replicas)
        took = await rig.cluster.wait_ready(90)
        counts = {s: len(rig.cluster.pods_of(f"{RELEASE}-{s}")) for s in STAGES}
        assert counts == dict.fromkeys(STAGES, replicas)
        print(f"\nscaled to {replicas}: every pod Ready in {took:.1f} s", file=sys.stderr)
        await wait_books(rig.bus, 200)
    audit = await audit_since(rig.cluster, rig.bus, rig.lake, rig.start_ms, "after 1 -> 3 -> 1")
    assert audit.figures["fair_price points"] > 0
