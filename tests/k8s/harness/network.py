"""Pod addresses and names: each pod its own loopback address, and its own /etc/hosts in which
Service names resolve to the Ready pods behind them, as cluster DNS would answer.

Every pod's hosts file is bind-mounted over /etc/hosts in the pod's mount namespace and
rewritten in place (same inode: a bind mount follows the inode, not the name) whenever a pod
becomes Ready or stops being Ready. glibc reads /etc/hosts on every lookup, so a client that
reconnects finds the new endpoints, as it would after a DNS TTL.
"""

from __future__ import annotations

import ipaddress
import random
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Endpoint", "Network", "free_subnet", "service_names"]

CLUSTER_DOMAIN = "cluster.local"


_HANDED_OUT: set[ipaddress.IPv4Network] = set()
"""The subnets of this process's clusters (several may run at once, before any listens)."""


def free_subnet() -> ipaddress.IPv4Network:
    """A /16 of 127.0.0.0/8 where nobody listens on 8080 (several harnesses may run at once)."""
    for _ in range(50):
        subnet = ipaddress.IPv4Network(f"127.{random.randint(100, 250)}.0.0/16")
        if subnet in _HANDED_OUT:
            continue
        probe = str(subnet[1])
        with socket.socket() as sock:
            try:
                sock.bind((probe, 8080))
            except OSError:
                continue
        _HANDED_OUT.add(subnet)
        return subnet
    raise RuntimeError("no free 127.x.0.0/16 found")


def service_names(name: str, namespace: str) -> list[str]:
    """The names a pod may use for ``name`` (its DNS search path: namespace, svc, cluster)."""
    return [
        name,
        f"{name}.{namespace}",
        f"{name}.{namespace}.svc",
        f"{name}.{namespace}.svc.{CLUSTER_DOMAIN}",
    ]


@dataclass(frozen=True)
class Endpoint:
    """What the network needs of one pod."""

    name: str
    address: str
    labels: dict[str, str]
    ready: bool
    running: bool
    hostname: str = ""
    subdomain: str = ""


class Network:
    def __init__(self, namespace: str, directory: Path) -> None:
        self.namespace = namespace
        self.directory = directory
        self.subnet = free_subnet()
        self._next = 10
        self._files: dict[str, tuple[Path, str]] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.extra: dict[str, str] = {}
        """Hosts outside the cluster (name -> address), e.g. an existing NATS."""

    def allocate(self) -> str:
        address = str(self.subnet[self._next])
        self._next += 1
        return address

    def hosts_file(self, pod: str, address: str, hostname: str) -> Path:
        """The pod's /etc/hosts (kept in place from now on)."""
        path = self.directory / f"{pod}.hosts"
        path.write_text("")
        self._files[pod] = (path, f"{address}\t{hostname}")
        return path

    def forget(self, pod: str) -> None:
        self._files.pop(pod, None)

    def resolv_conf(self) -> Path:
        """No name server: a name that is not in /etc/hosts does not resolve (NXDOMAIN)."""
        path = self.directory / "resolv.conf"
        if not path.exists():
            path.write_text(f"search {self.namespace}.svc.{CLUSTER_DOMAIN}\noptions ndots:1\n")
        return path

    def records(self, pods: Iterable[Endpoint]) -> list[tuple[str, str]]:
        """(address, name) of every Service's endpoints and every StatefulSet pod's name."""
        pods = list(pods)
        found: list[tuple[str, str]] = []
        for svc_name, svc in sorted(self.services.items()):
            spec = svc.get("spec", {})
            selector = spec.get("selector") or {}
            if not selector:
                continue
            not_ready_too = bool(spec.get("publishNotReadyAddresses"))
            for pod in pods:
                if not all(pod.labels.get(k) == v for k, v in selector.items()):
                    continue
                if pod.ready or (not_ready_too and pod.running):
                    found += [(pod.address, n) for n in service_names(svc_name, self.namespace)]
                    if pod.subdomain == svc_name and pod.hostname:
                        found += [
                            (pod.address, f"{pod.hostname}.{n}")
                            for n in service_names(svc_name, self.namespace)
                        ]
        found += [(address, name) for name, address in sorted(self.extra.items())]
        return found

    def update(self, pods: Iterable[Endpoint]) -> None:
        """Rewrite every pod's hosts file in place."""
        records = self.records(pods)
        lines = "".join(f"{address}\t{name}\n" for address, name in records)
        for path, own in self._files.values():
            text = f"127.0.0.1\tlocalhost\n{own}\n{lines}".encode()
            with path.open("r+b") as hosts:
                if hosts.read() == text:
                    continue
                hosts.seek(0)
                hosts.write(text)
                hosts.truncate()
