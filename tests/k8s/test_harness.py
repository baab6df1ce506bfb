"""The harness's kubelet and controllers on small manifests of shell containers (the busybox
image runs this machine's ``sh``): restarts with back-off, liveness and readiness probes,
Service names that follow readiness in every pod's /etc/hosts, the grace period, volumes and
the environment where the spec puts them, and no process outliving the harness."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from fairprice.common.testing import eventually

from .conftest import ROOT
from .harness import Cluster, ConfigError
from .harness import network as network_module
from .harness.kubelet import restart_delay
from .harness.network import Network

pytestmark = [pytest.mark.timeout(120)]

POD_LINE = re.compile(r"^(\S+)\s+\d+/\d+\s+(\S+)\s+\d+\s+\d+s$")
"""A pod's line as the harness prints it (``kubectl get pods -w``): name, status."""


def deployment(name: str, script: str, replicas: int = 1, **container: Any) -> dict[str, Any]:
    labels = {"app": name}
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": container.pop("grace", 5),
        "containers": [
            {"name": "main", "image": "busybox:1.37", "command": ["sh", "-c", script], **container}
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    spec["containers"][0].setdefault("volumeMounts", [{"name": "tmp", "mountPath": "/tmp"}])
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
    }


def exec_probe(command: str, **timing: int) -> dict[str, Any]:
    return {"exec": {"command": ["sh", "-c", command]}, "periodSeconds": 1, **timing}


@pytest.fixture
async def cluster_of(tmp_path: Path) -> AsyncIterator[Any]:
    clusters: list[Cluster] = []

    async def make(*docs: dict[str, Any]) -> Cluster:
        cluster = Cluster(list(docs), tmp_path / f"c{len(clusters)}")
        clusters.append(await cluster.__aenter__())
        return cluster

    yield make
    for cluster in clusters:
        await cluster.__aexit__(None, None, None)


def test_back_off_is_kubernetes_crash_loop_back_off() -> None:
    assert [restart_delay(n) for n in range(1, 9)] == [0, 10, 20, 40, 80, 160, 300, 300]


async def test_an_exiting_container_restarts_at_once_then_backs_off(cluster_of: Any) -> None:
    cluster = await cluster_of(deployment("crash", "exit 3"))
    (pod,) = cluster.pods_of("crash")
    (container,) = pod.containers
    await eventually(lambda: container.restarts == 1, within=10, what="restarted at once")
    await eventually(lambda: pod.status() == "CrashLoopBackOff", within=10, what="back-off")
    assert container.exit_code == 3 and container.restarts == 1


async def test_a_failing_liveness_probe_restarts_the_container(cluster_of: Any) -> None:
    """The exec probe runs in the container's view: its /tmp is the pod's emptyDir."""
    liveness = exec_probe("test -f /tmp/alive", failureThreshold=2)
    cluster = await cluster_of(
        deployment("live", "touch /tmp/alive; exec sleep 1000", livenessProbe=liveness)
    )
    (pod,) = cluster.pods_of("live")
    (container,) = pod.containers
    await eventually(lambda: pod.ready, within=10, what="started")
    (pod.root / "volumes" / "tmp" / "alive").unlink()
    await eventually(lambda: container.restarts == 1, within=20, what="restarted by liveness")
    assert "liveness probe failed" in container.log_path.read_text()


async def test_service_names_resolve_to_ready_pods_only(cluster_of: Any) -> None:
    """Two pods behind Service ``web``: ``web`` and ``web.<ns>.svc.cluster.local`` resolve
    (getent, in a third pod) to the Ready one only, and follow readiness both ways."""
    readiness = exec_probe("test -f /tmp/ready", failureThreshold=1)
    web = deployment("web", "exec sleep 1000", replicas=2, readinessProbe=readiness)
    cluster = await cluster_of(web, service("web"), deployment("client", "exec sleep 1000"))
    (client,) = cluster.pods_of("client")
    first, second = cluster.pods_of("web")
    await eventually(lambda: client.ready, within=10, what="client running")

    async def resolves(name: str, address: str | None) -> bool:
        script = f"getent hosts {name}" + (f" | grep -q '^{address} '" if address else "")
        return await client.containers[0].exec(["sh", "-c", script], 5) == 0

    assert not await resolves("web", None), "no Ready pod: no address"
    (first.root / "volumes" / "tmp" / "ready").touch()
    await eventually(lambda: resolves("web", first.address), within=10, what="first Ready")
    assert await resolves("web.fairprice.svc.cluster.local", first.address)
    assert not await resolves("web", second.address)
    (first.root / "volumes" / "tmp" / "ready").unlink()
    (second.root / "volumes" / "tmp" / "ready").touch()
    await eventually(lambda: resolves("web", second.address), within=10, what="second Ready")
    assert not await resolves("web", first.address)


async def test_a_probe_in_flight_is_reaped_with_its_pod(cluster_of: Any) -> None:
    """A pod deleted while its exec probe runs (a session of its own, which the container's
    SIGKILL does not reach): the probe's process is killed and reaped by the time the deletion
    returns, not left running for the event loop to drop."""
    readiness = exec_probe("touch /tmp/probing; exec sleep 999", timeoutSeconds=600)
    cluster = await cluster_of(deployment("slow", "exec sleep 1000", readinessProbe=readiness))
    (pod,) = cluster.pods_of("slow")
    probing = pod.root / "volumes" / "tmp" / "probing"
    await eventually(probing.exists, within=10, what="the probe running")

    def probe_processes() -> list[psutil.Process]:
        children = psutil.Process().children(recursive=True)
        return [p for p in children if p.cmdline() == ["sleep", "999"]]

    await eventually(lambda: bool(probe_processes()), within=10, what="the probe's sleep")
    (probe,) = probe_processes()
    await cluster.delete_pod(pod.name, replace=False)
    assert not probe.is_running(), "the probe's process was reaped"


async def test_stop_is_sigterm_then_sigkill_after_the_grace_period(cluster_of: Any) -> None:
    polite = deployment("polite", "trap 'exit 0' TERM; sleep 1000 & wait")
    stubborn = deployment("stubborn", "trap '' TERM; sleep 1000 & wait; wait", grace=1)
    cluster = await cluster_of(polite, stubborn)
    pods = [cluster.pods_of("polite")[0], cluster.pods_of("stubborn")[0]]
    await eventually(lambda: all(p.ready for p in pods), within=10, what="both running")
    started = time.monotonic()
    await cluster.delete_pod(pods[1].name, replace=False)
    took = time.monotonic() - started
    await cluster.delete_pod(pods[0].name, replace=False)
    assert pods[0].containers[0].exit_code == 0, "SIGTERM reached the polite one"
    assert pods[1].containers[0].exit_code == -signal.SIGKILL and took >= 1.0


async def test_a_forced_teardown_kills_every_pod_at_once(tmp_path: Path) -> None:
    """``teardown_grace=0``: when the cluster ends its pods are killed, with neither the
    preStop hook nor the grace period (here 10 minutes each) waited for."""
    hook = {"preStop": {"exec": {"command": ["sleep", "600"]}}}
    stubborn = deployment("stubborn", "trap '' TERM; sleep 1000 & wait; wait", grace=600)
    stubborn["spec"]["template"]["spec"]["containers"][0]["lifecycle"] = hook
    async with Cluster([stubborn], tmp_path, teardown_grace=0) as cluster:
        (pod,) = cluster.pods_of("stubborn")
        await eventually(lambda: pod.ready, within=10, what="running")
    assert pod.containers[0].exit_code == -signal.SIGKILL


async def test_env_and_volumes_are_where_the_spec_says(cluster_of: Any) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg"},
        "data": {"app.toml": "x = 1\n", "NAME": "from-configmap"},
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "sec"},
        "data": {"password": "czNjcjN0"},  # s3cr3t
    }
    env = [
        {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "NAME"}}},
        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
        {"name": "C", "value": "$(A)-and-more"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    script = (
        'echo "$A $B $C $POD" > /tmp/env; cat /etc/harness-test/app.toml > /tmp/part; '
        "mv /tmp/part /tmp/file; exec sleep 1000"
    )  # `> /tmp/file` would create the file before cat fills it: the rename makes it whole
    workload = deployment("env", script, env=env)
    spec = workload["spec"]["template"]["spec"]
    spec["volumes"].append({"name": "cfg", "configMap": {"name": "cfg", "items": []}})
    spec["volumes"][-1]["configMap"]["items"] = [{"key": "app.toml", "path": "app.toml"}]
    spec["containers"][0]["volumeMounts"].append({"name": "cfg", "mountPath": "/etc/harness-test"})
    cluster = await cluster_of(config, secret, workload)
    (pod,) = cluster.pods_of("env")
    tmp = pod.root / "volumes" / "tmp"
    await eventually(lambda: (tmp / "file").exists(), within=10, what="container wrote")
    assert (
        tmp / "env"
    ).read_text() == f"from-configmap s3cr3t from-configmap-and-more {pod.name}\n"
    assert (tmp / "file").read_text() == "x = 1\n"
    on_host = await asyncio.to_thread(Path("/etc/harness-test/app.toml").exists)
    assert not on_host, "mounted in the pod only"


async def test_no_process_outlives_a_sigkilled_harness(tmp_path: Path) -> None:
    """The harness killed with SIGKILL (no chance to stop its pods): the parent-death signal
    takes every pod's process with it."""
    values = tmp_path / "values.json"
    values.write_text('{"operator": {"enabled": false}}')
    harness = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.k8s.harness",
        "--values",
        str(values),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert harness.stdout is not None
    status: dict[str, str] = {}
    try:
        # Once every pod's containers run (Ready or not: their processes exist).
        async for line in harness.stdout:
            if found := POD_LINE.match(line.decode()):
                status[found[1]] = found[2]
            running = [s for s in status.values() if s == "Running"]
            if len(running) >= 6 and set(status.values()) <= {"Running", "NotRunHere"}:
                break
            if b"every pod Ready" in line or b"not every pod" in line:
                break
        pods = psutil.Process(harness.pid).children(recursive=True)
        assert len(pods) >= 6
        harness.kill()
        await harness.wait()
    finally:
        if harness.returncode is None:
            harness.kill()
            await harness.wait()

    def all_gone() -> bool:
        return not [p for p in pods if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    await eventually(all_gone, within=30, what="every pod process gone")


def test_clusters_alive_at_once_get_distinct_subnets(tmp_path: Path) -> None:
    """Clusters alive at once, in one process (test_run_value_sets) or in several (``make
    test``'s two workers), each hold a /16 of their own, though no pod listens in any yet
    (40 random picks of 151 would repeat one); a closed one's subnet is free again."""
    networks = [Network("fairprice", tmp_path) for _ in range(40)]
    try:
        assert len({network.subnet for network in networks}) == 40
        lock = os.open(
            network_module._LOCKS / f"127.{networks[0].subnet[0].packed[1]}.lock", os.O_WRONLY
        )
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            networks[0].close()
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again
        finally:
            os.close(lock)
    finally:
        for network in networks:
            network.close()


async def test_a_missing_secret_is_a_config_error_of_the_pod(cluster_of: Any) -> None:
    env = [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "password"}}}]
    cluster = await cluster_of(deployment("needy", "exec sleep 1000", env=env))
    (pod,) = cluster.pods_of("needy")
    assert pod.status() == "CreateContainerConfigError" and "absent" in pod.error
    assert not pod.containers


async def test_scaling_down_removes_not_ready_pods_first_then_the_newest(cluster_of: Any) -> None:
    readiness = exec_probe("test -f /tmp/ready", failureThreshold=1)
    cluster = await cluster_of(deployment("web", "exec sleep 1000", 3, readinessProbe=readiness))
    oldest, middle, newest = sorted(cluster.pods_of("web"), key=lambda p: p.created)
    for pod in (oldest, newest):
        (pod.root / "volumes" / "tmp" / "ready").touch()
    await eventually(lambda: oldest.ready and newest.ready, within=10, what="two Ready")
    await cluster.scale("web", 2)
    assert {p.name for p in cluster.pods_of("web")} == {oldest.name, newest.name}
    await cluster.scale("web", 1)
    assert [p.name for p in cluster.pods_of("web")] == [oldest.name]


async def test_a_service_port_other_than_its_target_port_is_refused(tmp_path: Path) -> None:
    """Names are mapped to pod addresses, ports are not: a Service that remaps a port cannot be
    run faithfully, and the harness says so instead of running it wrong."""
    remapped = service("web")
    remapped["spec"]["ports"] = [{"port": 80, "targetPort": 8080}]
    cluster = Cluster([deployment("web", "exec sleep 1000"), remapped], tmp_path)
    with pytest.raises(ConfigError, match="port 80 targets 8080"):
        await cluster.__aenter__()
