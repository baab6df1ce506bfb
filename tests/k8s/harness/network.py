"""Pod addresses and names: each pod its own loopback address, and its own /etc/hosts in which
Service names resolve to the Ready pods behind them, as cluster DNS would answer.

Every pod's hosts file is bind-mounted over /etc/hosts in the pod's mount namespace and
rewritten in place (same inode: a bind mount follows the inode, not the name) whenever a pod
becomes Ready or stops being Ready. glibc reads /etc/hosts on every lookup, so a client that
reconnects finds the new endpoints, as it would after a DNS TTL.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import random
import socket
import tempfile
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Endpoint", "Network", "free_subnet", "service_names"]

CLUSTER_DOMAIN = "cluster.local"
FIRST_POD = 10
"""The host number of the first pod address in a harness's subnet."""
_LOCKS = Path(tempfile.gettempdir()) / "fairprice-harness-subnets"


def free_subnet() -> tuple[ipaddress.IPv4Network, int]:
    """A /16 of 127.0.0.0/8 that no other harness uses (several may run at once, as in
    ``pytest -n 2``), and the open file whose lock holds it: each harness keeps an exclusive
    ``flock`` on its subnet's lock file while it lives, which the kernel releases however the
    harness ends. Probing a port alone raced: two harnesses could pick the same subnet.
    The lock is a file descriptor, for ``os.close`` to release."""
    _LOCKS.mkdir(exist_ok=True)
    octets = list(range(100, 251))
    random.SystemRandom().shuffle(octets)
    for octet in octets:
        lock = os.open(_LOCKS / f"127.{octet}.lock", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            continue
        subnet = ipaddress.IPv4Network(f"127.{octet}.0.0/16")
        with socket.socket() as sock:  # and no stray process of an earlier run listens there
            try:
                sock.bind((str(subnet[FIRST_POD]), 8080))
            except OSError:
                os.close(lock)
                continue
        return subnet, lock
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
        self.subnet, lock = free_subnet()
        self.close = weakref.finalize(self, os.close, lock)
        """Release the subnet (at the latest when this network is garbage)."""
        self._next = FIRST_POD
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
