"""Fixtures: the MarketFeed CRD and examples from k8s/, kmock's Kubernetes emulator serving that
CRD, and the operator service run in-process against it and a real nats-server."""

from __future__ import annotations

import asyncio
import socket
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml
from prometheus_client import CollectorRegistry

from fairprice.common.settings import HttpSettings, NatsSettings
from fairprice.operator.handlers import GROUP, PLURAL, VERSION
from fairprice.operator.service import run
from fairprice.operator.settings import OperatorSection, OperatorSettings

ROOT = Path(__file__).resolve().parents[3]
CRD_PATH = ROOT / "k8s" / "base" / "crd" / "marketfeeds.fairprice.io.yaml"
EXAMPLES = sorted((ROOT / "k8s" / "examples").glob("*.yaml"))
NAMESPACE = "markets"


@pytest.fixture(scope="session")
def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return loaded


ApiServer = kmock.KubernetesEmulator


@pytest.fixture
async def k8s(crd: dict[str, Any]) -> AsyncIterator[ApiServer]:
    """kmock's emulated API server, knowing the built-in resources (events) and the MarketFeed
    CRD as the API server publishes it in its discovery documents.

    Unlike a real API server, kmock keeps every object's ``resourceVersion`` as it was created,
    so kopf cannot tell the echoes of its own patches from new changes and may call a handler
    twice for one change: the handlers are idempotent, as they must be anyway."""
    async with ApiServer() as server, kmock.Server(server):
        with warnings.catch_warnings():
            # kmock 0.8 reads its bundled file with importlib.resources.read_binary,
            # deprecated on Python 3.11 (our warnings are errors).
            warnings.simplefilter("ignore", DeprecationWarning)
            server.resources.load_bundled()
        names = crd["spec"]["names"]
        (version,) = (v for v in crd["spec"]["versions"] if v["name"] == VERSION)
        server.resources[f"{GROUP}/{VERSION}/{PLURAL}"] = kmock.ResourceInfo(
            kind=names["kind"],
            singular=names["singular"],
            namespaced=crd["spec"]["scope"] == "Namespaced",
            shortnames=set(names.get("shortNames", [])),
            categories=set(names.get("categories", [])),
            subresources=set(version.get("subresources", {})),
            verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
        )
        yield server


def feeds_path(namespace: str = NAMESPACE, name: str | None = None) -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    return f"{path}/{name}" if name else path


def market_feed(name: str, spec: dict[str, Any], namespace: str = NAMESPACE) -> dict[str, Any]:
    """A MarketFeed as the API server stores it (it adds the uid and creation time)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MarketFeed",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{namespace}-{name}",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "generation": 1,
            "resourceVersion": "1",
        },
        "spec": spec,
    }


def operator_settings(
    nats_settings: NatsSettings, api_server: str, *, port: int = 0, **section: Any
) -> OperatorSettings:
    return OperatorSettings(
        nats=nats_settings,
        operator=OperatorSection(
            api_server=api_server,
            namespaces=[NAMESPACE],
            http=HttpSettings(host="127.0.0.1", port=port),
            **section,
        ),
    )


class RunningOperator:
    def __init__(self, registry: CollectorRegistry, port: int) -> None:
        self.registry = registry
        self.url = f"http://127.0.0.1:{port}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def operator(k8s: ApiServer, nats_settings: NatsSettings) -> AsyncIterator[RunningOperator]:
    """The operator service, ready (watching MarketFeeds in ``NAMESPACE``)."""
    port = _free_port()
    settings = operator_settings(
        nats_settings, str(k8s.url), status_interval_s=0.2, stale_after_s=60.0, port=port
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    registry = CollectorRegistry()
    task = asyncio.create_task(run(settings, stop=stop, ready=ready, registry=registry))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait([task, waiter], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()  # raises what stopped it
    assert ready.is_set(), "operator not ready within 30 s"
    try:
        yield RunningOperator(registry, port)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


def with_defaults(schema: dict[str, Any], value: Any) -> Any:
    """``value`` with the schema's defaults filled in, as the API server stores an object."""
    if not isinstance(value, dict) or schema.get("type") != "object":
        return value
    result = dict(value)
    for name, prop in schema.get("properties", {}).items():
        if name not in result and "default" in prop:
            result[name] = prop["default"]
        if name in result:
            result[name] = with_defaults(prop, result[name])
    return result


def spec_schema(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = (v for v in crd["spec"]["versions"] if v["name"] == VERSION)
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema
