"""`make kube`: the offline chart, as `make all` would deploy it with `[kubernetes] offline =
true`, run by the harness as local processes. Prints pod states as they change, as
`kubectl get pods -w` would, then where to reach NATS and InfluxDB; Ctrl-C stops every pod
gracefully (SIGTERM, then SIGKILL after its grace period) and leaves no process behind.

    uv run --frozen python -m tests.k8s.harness [--values FILE.json] [--overlay dev-offline]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from fairprice.common.lifecycle import install_signal_handlers

from ..conftest import NAMESPACE, RELEASE, chart_crds, dev_values, kustomize, render_chart
from .cluster import Cluster

READY_WITHIN_S = 120.0


def _docs(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.overlay:
        return kustomize(f"overlays/{args.overlay}")
    values = json.loads(Path(args.values).read_text()) if args.values else dev_values()
    values.setdefault("simulator", {})["enabled"] = True
    return render_chart(values)


async def _main(args: argparse.Namespace) -> int:
    stop = install_signal_handlers()  # Ctrl-C once (make and uv deliver it twice): stop
    with tempfile.TemporaryDirectory(prefix="fairprice-kube-") as workdir:
        print(f"release {RELEASE} in namespace {NAMESPACE}, pods under {workdir}", flush=True)
        async with Cluster(_docs(args), Path(workdir), crds=chart_crds(), out=sys.stdout) as c:
            ready = asyncio.create_task(c.wait_ready(READY_WITHIN_S))
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if ready.done() and not ready.cancelled() and ready.exception() is None:
                _say_ready(c, ready.result())
            elif ready.done():
                print(f"not every pod became Ready: {ready.exception()}", flush=True)
            await stop.wait()
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError, AssertionError):
                await ready
            print("stopping every pod (Ctrl-C again: exit now, the pods get SIGTERM)", flush=True)
    print("stopped", flush=True)
    return 0


def _say_ready(cluster: Cluster, took: float) -> None:
    print(f"every pod Ready in {took:.1f} s", flush=True)
    for label, workload, url in (
        ("NATS", f"{RELEASE}-nats", "nats://{}:4222"),
        ("InfluxDB", f"{RELEASE}-influxdb", "http://{}:8086"),
    ):
        for pod in cluster.pods_of(workload)[:1]:
            print(f"  {label:<9} {url.format(pod.address)}", flush=True)
    secret = cluster.manifests.data("Secret", f"{RELEASE}-influxdb", optional=True) or {}
    if secret:
        login = f"{secret['username'].decode()} / {secret['password'].decode()}"
        print(f"  {'':<9} user / password: {login}", flush=True)
    print("  Ctrl-C stops everything", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.k8s.harness", description=__doc__)
    parser.add_argument("--values", help="chart values (JSON); default: from clusters_dev.toml")
    parser.add_argument("--overlay", help="a kustomize overlay instead, e.g. dev-offline")
    sys.exit(asyncio.run(_main(parser.parse_args())))


if __name__ == "__main__":
    main()
