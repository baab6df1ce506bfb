"""The cluster's API server: kmock's Kubernetes emulator, knowing the built-in resources and the
chart's CRDs, behind a TLS endpoint with a service-account token, as pods reach
``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`` with the files mounted at
/var/run/secrets/kubernetes.io/serviceaccount (kopf's ``login_with_service_account``).

kmock does not authorise: ``requests`` lists what a token asked for, for a test to compare
with the rendered Role."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import ssl
import subprocess
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

import kmock

__all__ = ["KubeApi"]

_VERBS = {"LIST": "list", "WATCH": "watch", "FETCH": "get", "UPDATE": "patch", "CREATE": "create"}
_VERBS |= {"DELETE": "delete"}
_DISCOVERY = re.compile(r"^/(api|apis)(/[^/]+){0,2}$")


class KubeApi:
    def __init__(self, crds: list[dict[str, Any]], address: str, workdir: Path) -> None:
        self.crds = crds
        self.host = address
        self.port = 443
        self.workdir = workdir
        self.token = secrets.token_urlsafe(24)
        self.ca_path = workdir / "ca.crt"
        self.emulator = kmock.KubernetesEmulator()
        self._stack = contextlib.AsyncExitStack()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The emulator's own plain-HTTP URL, for tests (no token needed)."""
        return str(self._kmock.url).rstrip("/")

    async def __aenter__(self) -> KubeApi:
        self.workdir.mkdir(parents=True, exist_ok=True)
        await self._stack.enter_async_context(self.emulator)
        self._kmock = await self._stack.enter_async_context(kmock.Server(self.emulator))
        with warnings.catch_warnings():
            # kmock 0.8 reads its bundled file with importlib.resources.read_binary,
            # deprecated on Python 3.11 (our warnings are errors).
            warnings.simplefilter("ignore", DeprecationWarning)
            self.emulator.resources.load_bundled()
        for crd in self.crds:
            names = crd["spec"]["names"]
            for version in crd["spec"]["versions"]:
                key = f"{crd['spec']['group']}/{version['name']}/{names['plural']}"
                self.emulator.resources[key] = kmock.ResourceInfo(
                    kind=names["kind"],
                    singular=names["singular"],
                    namespaced=crd["spec"]["scope"] == "Namespaced",
                    shortnames=set(names.get("shortNames", [])),
                    categories=set(names.get("categories", [])),
                    subresources=set(version.get("subresources", {})),
                    verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
                )
        key = self.workdir / "tls.key"
        await asyncio.to_thread(
            subprocess.run,
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
            + ["-nodes", "-days", "2", "-subj", "/CN=kubernetes", "-keyout", str(key)]
            + ["-out", str(self.ca_path), "-addext"]
            + [f"subjectAltName=IP:{self.host},DNS:kubernetes.default.svc"],
            check=True,
            capture_output=True,
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ca_path, key)
        self._server = await asyncio.start_server(self._pipe, self.host, self.port, ssl=context)
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await self._stack.aclose()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        upstream: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream = await asyncio.open_connection(
                self._kmock.url.host, self._kmock.url.port
            )
            await asyncio.gather(_copy(reader, upstream), _copy(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._pipes.discard(task)
            for stream in (writer, upstream):
                if stream is not None:
                    stream.close()
                    with contextlib.suppress(OSError, ssl.SSLError):
                        await stream.wait_closed()

    async def create(self, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
        """``kubectl apply`` of a new custom object: stored as the API server would store it
        (uid, creation time, generation, the CRD schema's defaults), which kmock does not do."""
        group, version = obj["apiVersion"].split("/")
        crd = next(c for c in self.crds if c["spec"]["names"]["kind"] == obj["kind"])
        (served,) = (v for v in crd["spec"]["versions"] if v["name"] == version)
        stored: dict[str, Any] = _with_defaults(served["schema"]["openAPIV3Schema"], obj)
        stored["metadata"] = {
            **obj["metadata"],
            "namespace": namespace,
            "uid": secrets.token_hex(16),
            "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "generation": 1,
            "resourceVersion": "1",
        }
        plural = crd["spec"]["names"]["plural"]
        path = f"/apis/{group}/{version}/namespaces/{namespace}/{plural}"
        async with self.emulator.post(path, json=stored) as response:
            response.raise_for_status()
        return stored

    async def get(self, path: str) -> dict[str, Any] | None:
        async with self.emulator.get(path) as response:
            if response.status == 404:
                return None
            response.raise_for_status()
            found: dict[str, Any] = await response.json()
            return found

    def requests(self) -> set[tuple[str, str, str]]:
        """(API group, resource[/subresource], RBAC verb) of every request made with the
        service-account token, discovery documents aside."""
        used: set[tuple[str, str, str]] = set()
        for request in list(self.emulator):
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                continue
            if request.method == "GET" and _DISCOVERY.match(request.url.path):
                continue
            resource, action = request.resource, request.action
            if resource is None or action is None:
                used.add(("?", request.url.path, request.method))
                continue
            name = str(resource.plural) + (f"/{request.subresource}" if request.subresource else "")
            used.add((str(resource.group or ""), name, _VERBS.get(action.name, action.name)))
        return used


def _with_defaults(schema: dict[str, Any], value: Any) -> Any:
    """``value`` with the schema's defaults filled in (structural schema defaulting)."""
    if not isinstance(value, dict) or schema.get("type") != "object":
        return value
    result = dict(value)
    for name, prop in schema.get("properties", {}).items():
        if name not in result and "default" in prop:
            result[name] = prop["default"]
        if name in result:
            result[name] = _with_defaults(prop, result[name])
    return result


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof()
