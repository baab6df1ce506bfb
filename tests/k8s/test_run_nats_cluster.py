"""The chart's 3-node NATS (``nats.cluster.enabled``: a StatefulSet whose pods find each other
by their names under the headless Service, streams replicated 3 times) run by the harness with
the simulator: one NATS pod deleted at once (``kubectl delete pod --force``), JetStream keeps
serving through the other two, and the StatefulSet brings the pod back under the same name
and volume, and tests/e2e's audit finds nothing lost or duplicated. The pod stays away (its node is
down) until the other two have been seen serving."""

from __future__ import annotations

import copy
import sys
import time
from typing import Any

import nats.errors
import nats.js.errors
import pytest

from fairprice.common.bus import connect_bus
from fairprice.common.subjects import Stream
from fairprice.common.testing import eventually

from ..e2e.conftest import Lake, now_ms, wait_books
from .conftest import RELEASE, VALUE_SETS, render_chart
from .running import RECOVERY_VALUES, audit_since, nats_settings, reach, running_cluster

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(300),
]


def _values() -> dict[str, Any]:
    values = copy.deepcopy(RECOVERY_VALUES)
    values["nats"] = VALUE_SETS["ha"]["nats"]
    return values


async def test_killing_one_nats_pod_keeps_jetstream_serving(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    docs = render_chart(_values())
    workdir = tmp_path_factory.mktemp("nats-cluster")
    async with running_cluster(docs, workdir, "3-node NATS") as cluster, reach(cluster) as bus:
        nodes = sorted(p.name for p in cluster.pods_of(f"{RELEASE}-nats"))
        assert nodes == [f"{RELEASE}-nats-{i}" for i in range(3)]
        await wait_books(bus, 10)  # the services created the streams: the meta leader is up
        info = await bus.jsm.stream_info(Stream.BOOKS.value)
        assert info.config.num_replicas == 3 and info.cluster is not None
        assert len(info.cluster.replicas or []) == 2, "the leader and two replicas"
        start_ms = now_ms()
        await wait_books(bus, 200)

        victim = cluster.pod(f"{RELEASE}-nats-1")
        old_address = victim.address
        down = time.monotonic()
        # Its node is gone: the StatefulSet cannot bring it back until the test says so.
        await cluster.delete_pod(victim.name, grace=0, replace=False)
        survivor = cluster.pod(f"{RELEASE}-nats-0")
        settings = nats_settings(cluster, survivor.address)
        async with connect_bus(settings, name="k8s-test-survivor") as other:
            seqs: list[int] = []

            async def books_grow() -> bool:
                """BOOKS answers and grows (a new stream leader takes a few seconds when the
                killed node led it)."""
                try:
                    info = await other.jsm.stream_info(Stream.BOOKS.value)
                except (nats.errors.TimeoutError, nats.js.errors.APIError):
                    return False
                seqs.append(info.state.last_seq)
                return seqs[-1] >= seqs[0] + 100

            await eventually(books_grow, within=30, interval=0.2, what="BOOKS growing on 2 nodes")
            assert len(cluster.pods_of(f"{RELEASE}-nats")) == 2
        print(
            f"\nnats-1 deleted: BOOKS went on from {seqs[0]} to {seqs[-1]} through the other "
            f"nodes, {time.monotonic() - down:.1f} s after the kill",
            file=sys.stderr,
        )
        cluster.reconcile(f"{RELEASE}-nats")
        took = await cluster.wait_ready(90)
        back = cluster.pod(f"{RELEASE}-nats-1")
        assert back.address != old_address, "a new pod under the same name"
        print(f"nats-1 back and every pod Ready {took:.1f} s later", file=sys.stderr)
        await wait_books(bus, 200)
        audit = await audit_since(cluster, bus, Lake(), start_ms, "after a NATS pod was killed")
        assert audit.figures["fair_price points"] > 0
