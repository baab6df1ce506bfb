"""Container probes as the kubelet runs them: httpGet (2xx/3xx), tcpSocket (connects), exec
(exits 0), each within ``timeoutSeconds``; defaults as in the Kubernetes API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["Probe", "port_number"]

ExecRunner = Callable[[list[str], float], Awaitable[int]]


def port_number(port: int | str, container: dict[str, Any]) -> int:
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports", ()):
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"container {container['name']} has no port named {port!r}")


@dataclass(frozen=True)
class Probe:
    spec: dict[str, Any]

    @property
    def initial_delay(self) -> float:
        return float(self.spec.get("initialDelaySeconds", 0))

    @property
    def period(self) -> float:
        return float(self.spec.get("periodSeconds", 10))

    @property
    def timeout(self) -> float:
        return float(self.spec.get("timeoutSeconds", 1))

    @property
    def success_threshold(self) -> int:
        return int(self.spec.get("successThreshold", 1))

    @property
    def failure_threshold(self) -> int:
        return int(self.spec.get("failureThreshold", 3))

    async def check(self, address: str, container: dict[str, Any], run_exec: ExecRunner) -> bool:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow the cancellation
        # of a probe loop (the pod's deletion) when the check finishes at the same moment.
        try:
            async with asyncio.timeout(self.timeout + 0.5):
                return await self._check(address, container, run_exec)
        except TimeoutError:
            return False

    async def _check(self, address: str, container: dict[str, Any], run_exec: ExecRunner) -> bool:
        if "httpGet" in self.spec:
            get = self.spec["httpGet"]
            port = port_number(get["port"], container)
            scheme = get.get("scheme", "HTTP").lower()
            host = get.get("host") or address
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders", ())}
            url = f"{scheme}://{host}:{port}{get.get('path', '/')}"
            try:
                async with httpx.AsyncClient(timeout=self.timeout, verify=False) as client:
                    response = await client.get(url, headers=headers)
            except httpx.HTTPError:
                return False
            return 200 <= response.status_code < 400
        if "tcpSocket" in self.spec:
            port = port_number(self.spec["tcpSocket"]["port"], container)
            try:
                async with asyncio.timeout(self.timeout):
                    host = self.spec["tcpSocket"].get("host") or address
                    _, writer = await asyncio.open_connection(host, port)
            except (OSError, TimeoutError):
                return False
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True
        if "exec" in self.spec:
            return await run_exec(list(self.spec["exec"]["command"]), self.timeout) == 0
        raise ValueError(f"probe {sorted(self.spec)}: not supported by the harness")
