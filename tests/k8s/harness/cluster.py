"""A one-node cluster for rendered manifests: the controllers' part (a Deployment or StatefulSet
keeps its replicas, pods get names, addresses and volumes, Services route to Ready pods) around
the kubelet's (kubelet.py).

    async with Cluster(docs, workdir) as cluster:
        await cluster.wait_ready(within=90)
        await cluster.scale("fairprice-converter", 3)
        results = await cluster.run_hooks("test")
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from .apiserver import KubeApi
from .images import program
from .kubelet import Container, Pod
from .manifests import ConfigError, Manifests, PodTemplate, container_env, write_volume
from .network import Endpoint, Network
from .probes import port_number
from .sandbox import Sandbox

__all__ = ["Cluster", "program_is_missing"]

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class Cluster:
    def __init__(
        self,
        docs: list[dict[str, Any]],
        workdir: Path,
        *,
        namespace: str = "fairprice",
        crds: list[dict[str, Any]] | None = None,
        out: TextIO | None = None,
        teardown_grace: float | None = None,
    ) -> None:
        """``teardown_grace``: the grace period every pod gets when the cluster ends. None:
        each pod's own (its preStop hook, SIGTERM, ``terminationGracePeriodSeconds``), as a
        namespace deletion gives; 0: killed at once (``kubectl delete --force
        --grace-period=0``), for runs that check nothing about the stop: NATS's lame-duck
        preStop alone holds a pod for its ``lame_duck_grace_period`` (10 s)."""
        self.manifests = Manifests(namespace, [d for d in docs if d])
        self.namespace = namespace
        self.workdir = workdir
        self.network = Network(namespace, workdir / "network")
        self.crds = crds
        self.api_server: KubeApi | None = None
        """With ``crds``: the API server (kmock) that pods with a service-account token reach."""
        self.out = out
        self.templates = {t.name: t for t in self.manifests.templates()}
        self.replicas = {n: t.replicas for n, t in self.templates.items() if not t.hook}
        self.pods: dict[str, Pod] = {}
        self._serial = 0
        self._printed: dict[str, str] = {}
        self._listeners: list[Callable[[], None]] = []
        self._cluster_ips: dict[str, str] = {}
        self._stopping = False
        self._teardown_grace = teardown_grace
        self.ready_at = 0.0
        """When ``wait_ready`` last saw every pod Ready (monotonic clock)."""

    # ---- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Cluster:
        (self.workdir / "network").mkdir(parents=True, exist_ok=True)
        self.network.services = dict(self.manifests.by_kind.get("Service", {}))
        if self.crds is not None:
            api = KubeApi(self.crds, self.network.allocate(), self.workdir / "apiserver")
            self.api_server = await api.__aenter__()
            for name in ("kubernetes", "kubernetes.default"):
                for suffix in ("", ".svc", ".svc.cluster.local"):
                    self.network.extra[name + suffix] = self.api_server.host
        for name in self.network.services:
            self._cluster_ips[name] = self.network.allocate()
        self._check_service_ports()
        self._print_header()
        for name in self.replicas:
            self._reconcile(name)
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopping = True
        try:
            pods = list(self.pods.values())
            await asyncio.gather(*(pod.delete(self._teardown_grace) for pod in pods))
        finally:
            self.network.close()
            if self.api_server is not None:
                await self.api_server.__aexit__(t, e, tb)

    # ---- what tests and people ask ---------------------------------------------------------

    def pods_of(self, workload: str) -> list[Pod]:
        return [p for p in self.pods.values() if p.workload == workload and not p.deleting.is_set()]

    def pod(self, name: str) -> Pod:
        return self.pods[name]

    def running_pods(self) -> list[Pod]:
        return [p for p in self.pods.values() if not p.not_run and not p.deleting.is_set()]

    def all_ready(self) -> bool:
        pods = [p for p in self.running_pods() if not self.templates[p.workload].hook]
        counts = {n: len(self.pods_of(n)) for n in self.replicas}
        return all(p.ready for p in pods) and all(
            counts[n] == r for n, r in self.replicas.items() if not self._not_runnable(n)
        )

    async def wait_ready(self, within: float) -> float:
        """Seconds until every pod that runs here is Ready; fails naming those that are not."""
        started = time.monotonic()
        await self.until(self.all_ready, within, "every pod Ready")
        self.ready_at = time.monotonic()
        return self.ready_at - started

    async def scale(self, workload: str, replicas: int) -> None:
        """``kubectl scale --replicas``: new pods start, surplus ones stop gracefully."""
        self.replicas[workload] = replicas
        await self._reconcile_and_wait(workload)

    async def delete_pod(self, name: str, grace: float | None = None, replace: bool = True) -> None:
        """``kubectl delete pod`` (grace 0: forced); the workload's controller replaces it
        (``replace=False``: not until ``reconcile``, as when its node is down)."""
        pod = self.pods[name]
        await pod.delete(grace)
        self._forget(pod)
        if replace:
            self._reconcile(pod.workload)

    def reconcile(self, workload: str) -> None:
        """The workload's controller brings its pods back to its replicas."""
        self._reconcile(workload)

    async def run_hooks(self, hook: str, within: float = 120.0) -> dict[str, tuple[str, str]]:
        """``helm test``: start the hook's pods, wait for them to finish; {pod: (phase, log)}."""
        pods = [self._create_pod(t, 0) for t in self.templates.values() if t.hook == hook]
        for pod in pods:
            if pod.error:
                raise ConfigError(f"pod {pod.name}: {pod.error}")
        await self.until(lambda: all(p.finished for p in pods), within, f"{hook} pods finished")
        results = {}
        for pod in pods:
            logs = "".join(c.log_path.read_text() for c in pod.containers if c.log_path.exists())
            results[pod.name] = (pod.phase, logs)
            self._forget(pod)
        return results

    def logs(self, pod: Pod, lines: int = 40) -> str:
        out = []
        for container in pod.containers:
            if container.log_path.exists():
                tail = container.log_path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {pod.name}/{container.name}\n" + "\n".join(tail))
        return "\n".join(out)

    def describe(self) -> str:
        """Every pod's line as ``kubectl get pods`` prints it, and the last logs of those that
        are not Ready (for failure messages)."""
        lines = [self._line(p) for p in self.pods.values()]
        lines += [self.logs(p) for p in self.running_pods() if not p.ready]
        return "\n".join(lines)

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    # ---- controllers -------------------------------------------------------------------

    def _not_runnable(self, workload: str) -> bool:
        spec = self.templates[workload].spec
        return any(program_is_missing(c) for c in spec["containers"])

    def _reconcile(self, workload: str) -> None:
        if self._stopping:
            return
        template = self.templates[workload]
        pods = self.pods_of(workload)
        wanted = self.replicas[workload]
        if len(pods) < wanted:
            taken = {p.name for p in pods}
            for ordinal in range(wanted):
                if len(pods) >= wanted:
                    break
                if template.kind == "StatefulSet" and template.pod_name(ordinal, 0) in taken:
                    continue
                self._serial += 1
                pods.append(self._create_pod(template, ordinal))
        elif len(pods) > wanted:
            # A ReplicaSet removes the pods that are not ready first, then the newest;
            # a StatefulSet the highest ordinals.
            if template.kind == "StatefulSet":
                surplus = sorted(pods, key=lambda p: int(p.name.rsplit("-", 1)[1]))[wanted:]
            else:
                surplus = sorted(pods, key=lambda p: (p.ready, -p.created))[: len(pods) - wanted]
            for pod in surplus:
                asyncio.get_running_loop().create_task(self._remove(pod))

    async def _remove(self, pod: Pod) -> None:
        await pod.delete()
        self._forget(pod)

    async def _reconcile_and_wait(self, workload: str) -> None:
        self._reconcile(workload)
        await self.until(
            lambda: (
                len([p for p in self.pods.values() if p.workload == workload])
                == self.replicas[workload]
            ),
            120,
            f"{workload} at {self.replicas[workload]} pods",
        )

    def _forget(self, pod: Pod) -> None:
        self.pods.pop(pod.name, None)
        self.network.forget(pod.name)
        self._changed(pod, gone=True)

    async def until(self, predicate: Callable[[], bool], within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {within:g} s\n{self.describe()}")
            await asyncio.sleep(0.1)

    # ---- a pod from its template ---------------------------------------------------------

    def _create_pod(self, template: PodTemplate, ordinal: int) -> Pod:
        name = template.pod_name(ordinal, self._serial)
        root = self.workdir / "pods" / name
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        address = self.network.allocate()
        spec = template.spec
        hostname = spec.get("hostname") or name
        subdomain = spec.get("subdomain") or template.service_name
        pod = Pod(
            name,
            template.name,
            address,
            dict(template.labels),
            spec,
            root,
            self._changed,
            hostname=hostname,
            subdomain=subdomain,
        )
        self.pods[name] = pod
        if any(program_is_missing(c) for c in spec["containers"]):
            pod.not_run = "an image that is not installed here"
            self._changed(pod)
            return pod
        try:
            self._containers(pod, template, ordinal)
        except ConfigError as exc:
            pod.error = str(exc)
            self._changed(pod)
            return pod
        pod.start()
        return pod

    def _volumes(self, pod: Pod, template: PodTemplate) -> dict[str, Path]:
        sources: dict[str, Path] = {}
        for volume in pod.spec.get("volumes", ()):
            path = pod.root / "volumes" / volume["name"]
            path.mkdir(parents=True)
            if "configMap" in volume or "secret" in volume:
                write_volume(volume, self.manifests, path)
            elif "emptyDir" in volume:
                path.chmod(0o1777)
            elif "persistentVolumeClaim" in volume:
                path = self._claim(volume["persistentVolumeClaim"]["claimName"])
            else:
                raise ConfigError(f"volume {volume['name']}: {sorted(volume)} not supported here")
            sources[volume["name"]] = path
        for claim in template.claims:
            claim_name = claim["metadata"]["name"]
            sources[claim_name] = self._claim(f"{claim_name}-{pod.name}")
        if self._automounts_token(pod.spec) and self.api_server is not None:
            path = pod.root / "volumes" / "kube-api-access"
            path.mkdir(parents=True)
            (path / "token").write_text(self.api_server.token)
            (path / "namespace").write_text(self.namespace)
            shutil.copy(self.api_server.ca_path, path / "ca.crt")
            sources["kube-api-access"] = path
        return sources

    def _claim(self, name: str) -> Path:
        """A PersistentVolumeClaim's volume: it outlives the pods that mount it."""
        path = self.workdir / "volumes" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _automounts_token(self, spec: dict[str, Any]) -> bool:
        if "automountServiceAccountToken" in spec:
            return bool(spec["automountServiceAccountToken"])
        account = self.manifests.get("ServiceAccount", spec.get("serviceAccountName", "default"))
        return bool((account or {}).get("automountServiceAccountToken", True))

    def _containers(self, pod: Pod, template: PodTemplate, ordinal: int) -> None:
        if pod.spec.get("initContainers"):
            raise ConfigError("initContainers are not supported by the harness")
        sources = self._volumes(pod, template)
        configs = {
            v["name"] for v in pod.spec.get("volumes", ()) if "configMap" in v or "secret" in v
        }
        hosts = self.network.hosts_file(pod.name, pod.address, pod.hostname)
        fields = {
            "metadata.name": pod.name,
            "metadata.namespace": self.namespace,
            "status.podIP": pod.address,
            "spec.nodeName": "harness",
            "spec.serviceAccountName": pod.spec.get("serviceAccountName", "default"),
        }
        for spec in pod.spec["containers"]:
            sandbox = Sandbox()
            sandbox.bind(hosts, "/etc/hosts")
            sandbox.bind(self.network.resolv_conf(), "/etc/resolv.conf")
            config_text = ""  # what its ConfigMaps and Secrets say (is NATS a cluster node?)
            for mount in spec.get("volumeMounts", ()):
                source = sources[mount["name"]]
                if mount.get("subPath"):
                    source = source / mount["subPath"]
                sandbox.bind(source, mount["mountPath"])
                if mount["name"] in configs:
                    config_text += "".join(
                        f.read_text(errors="replace") for f in source.rglob("*") if f.is_file()
                    )
            if "kube-api-access" in sources:
                sandbox.bind(sources["kube-api-access"], SA_DIR)
            sandbox.prepare()
            found = program(spec, pod.address, config_text)
            assert found is not None
            env = {**self._service_links(pod.spec), **container_env(spec, self.manifests, fields)}
            if self.api_server is not None:
                env.setdefault("KUBERNETES_SERVICE_HOST", self.api_server.host)
                env.setdefault("KUBERNETES_SERVICE_PORT", str(self.api_server.port))
            pod.containers.append(Container(pod, spec, found, env, sandbox))

    def _service_links(self, spec: dict[str, Any]) -> dict[str, str]:
        """``enableServiceLinks`` (default true): ``<SERVICE>_SERVICE_HOST`` and friends of every
        Service in the namespace, as the kubelet sets them (their ClusterIPs answer nothing
        here: use the names)."""
        if spec.get("enableServiceLinks", True) is False:
            return {}
        env: dict[str, str] = {}
        for name, service in self.network.services.items():
            if service["spec"].get("clusterIP") == "None":
                continue
            prefix = name.upper().replace("-", "_")
            ip = self._cluster_ips[name]
            for i, port in enumerate(service["spec"].get("ports", ())):
                proto = port.get("protocol", "TCP")
                if i == 0:
                    env[f"{prefix}_SERVICE_HOST"] = ip
                    env[f"{prefix}_SERVICE_PORT"] = str(port["port"])
                    env[f"{prefix}_PORT"] = f"{proto.lower()}://{ip}:{port['port']}"
                if "name" in port:
                    env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(
                        port["port"]
                    )
                key = f"{prefix}_PORT_{port['port']}_{proto}"
                env[key] = f"{proto.lower()}://{ip}:{port['port']}"
                env[f"{key}_PROTO"] = proto.lower()
                env[f"{key}_PORT"] = str(port["port"])
                env[f"{key}_ADDR"] = ip
        return env

    def _check_service_ports(self) -> None:
        """A Service name resolves to its pods' addresses, so a client reaches a pod on the
        Service's port: each port must be the container port it targets."""
        for name, service in self.network.services.items():
            selector = service["spec"].get("selector") or {}
            targets = [
                c
                for t in self.templates.values()
                if selector and all(t.labels.get(k) == v for k, v in selector.items())
                for c in t.spec["containers"]
            ]
            for port in service["spec"].get("ports", ()):
                target = port.get("targetPort", port["port"])
                for container in targets:
                    with contextlib.suppress(ValueError):
                        if port_number(target, container) != port["port"]:
                            raise ConfigError(
                                f"Service {name} port {port['port']} targets "
                                f"{target}: the harness maps names, not ports"
                            )

    # ---- state changes ---------------------------------------------------------------------

    def _endpoints(self) -> list[Endpoint]:
        """Every pod as the network sees it: a terminating pod leaves every Service at once."""
        return [
            Endpoint(
                p.name,
                p.address,
                p.labels,
                p.ready and not p.deleting.is_set(),
                p.running and not p.deleting.is_set(),
                p.hostname,
                p.subdomain,
            )
            for p in self.pods.values()
        ]

    def resolve(self, name: str) -> list[str]:
        """The addresses ``name`` resolves to in a pod now (its /etc/hosts)."""
        return [a for a, n in self.network.records(self._endpoints()) if n == name]

    def _changed(self, pod: Pod, gone: bool = False) -> None:
        self.network.update(self._endpoints())
        line = self._line(pod) if not gone else ""
        if self.out is not None and self._printed.get(pod.name) != line:
            if gone:
                self.out.write(f"{pod.name:<44} deleted\n")
            else:
                self.out.write(line + "\n")
            self.out.flush()
        self._printed[pod.name] = line
        for listener in self._listeners:
            listener()

    def _print_header(self) -> None:
        if self.out is not None:
            self.out.write(f"{'NAME':<44} {'READY':<6} {'STATUS':<27} {'RESTARTS':<9} AGE\n")

    def _line(self, pod: Pod) -> str:
        total = len(pod.spec["containers"])
        ready = sum(c.ready for c in pod.containers)
        age = time.monotonic() - pod.created
        return f"{pod.name:<44} {ready}/{total:<4} {pod.status():<27} {pod.restarts:<9} {age:.0f}s"


def program_is_missing(container: dict[str, Any]) -> bool:
    return program(container, "127.0.0.1") is None
