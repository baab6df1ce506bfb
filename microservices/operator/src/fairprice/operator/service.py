"""The operator service: kopf embedded in the service's own lifecycle.

``run`` serves /healthz /readyz /metrics, connects to NATS, opens the ``feeds`` bucket, then
runs kopf's operator as one task with ``stop_flag`` / ``ready_flag`` (kopf's embedding API):
our ``stop`` event stops kopf gracefully (it finishes the handlers in flight), and kopf's
readiness (watching started) is the ``kubernetes`` condition of /readyz.

kopf, when it runs in the main thread, installs its own SIGTERM/SIGINT handlers; the service
then stops when kopf does, whatever stopped it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from typing import Any

import kopf
from prometheus_client import CollectorRegistry

from fairprice.common.bus import connect_bus
from fairprice.common.health import HealthServer, Readiness
from fairprice.common.kv import Bucket, open_bucket
from fairprice.common.lifecycle import install_signal_handlers, run_service
from fairprice.common.logs import get_logger
from fairprice.operator.handlers import GROUP, FeedHandlers
from fairprice.operator.latest import LatestReader
from fairprice.operator.metrics import OperatorMetrics
from fairprice.operator.settings import OperatorSection, OperatorSettings

__all__ = ["kopf_settings", "main", "run"]

log = get_logger(__name__)


def main() -> None:
    run_service("operator", OperatorSettings, run)


async def run(
    settings: OperatorSettings,
    *,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    registry: CollectorRegistry | None = None,
) -> None:
    stop = stop or install_signal_handlers()
    registry = registry or CollectorRegistry()
    section = settings.operator
    readiness = Readiness("nats", "kubernetes")
    metrics = OperatorMetrics(registry)
    async with contextlib.AsyncExitStack() as stack:
        # HTTP first, closed last: /healthz answers while NATS is awaited, /readyz says why not.
        await stack.enter_async_context(HealthServer(section.http, registry, readiness))
        bus = await stack.enter_async_context(
            connect_bus(settings.nats, name="fairprice-operator", readiness=readiness, stop=stop)
        )
        feeds = await open_bucket(bus.js, Bucket.FEEDS, replicas=settings.nats.streams.replicas)
        operator_registry = kopf.OperatorRegistry()
        FeedHandlers(feeds, LatestReader(bus.js), section, metrics).register(operator_registry)
        _register_login(operator_registry, section)
        await _operate(operator_registry, section, stop, readiness, ready)


async def _operate(
    registry: kopf.OperatorRegistry,
    section: OperatorSection,
    stop: asyncio.Event,
    readiness: Readiness,
    ready: asyncio.Event | None,
) -> None:
    kopf_stop = asyncio.Event()
    kopf_ready = asyncio.Event()

    async def announce_ready() -> None:
        await kopf_ready.wait()
        readiness.set("kubernetes", True)
        log.info("watching MarketFeeds", namespaces=section.namespaces or "all")
        if ready is not None and readiness.ready:
            ready.set()

    async def relay_stop() -> None:
        await stop.wait()
        readiness.set("kubernetes", False)
        kopf_stop.set()

    async with asyncio.TaskGroup() as tg:
        announcer = tg.create_task(announce_ready(), name="operator-ready")
        relay = tg.create_task(relay_stop(), name="operator-stop")
        try:
            await kopf.operator(
                registry=registry,
                settings=kopf_settings(),
                standalone=True,
                clusterwide=not section.namespaces,
                namespaces=section.namespaces,
                stop_flag=kopf_stop,
                ready_flag=kopf_ready,
            )
        finally:
            _restore_signals()
            readiness.set("kubernetes", False)
            announcer.cancel()
            stop.set()  # kopf stopped on its own (a signal, a fatal error): so does the service
        await relay
    log.info("operator stopped")


def kopf_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # One replica (the Deployment uses the Recreate strategy): no peering objects to keep,
    # and no RBAC for them.
    settings.peering.standalone = True
    # The watched resource and namespaces are fixed at start: no list/watch of CRDs and
    # namespaces is needed (least privilege).
    settings.scanning.disabled = True
    # kopf's bookkeeping under our own names, in annotations: the status holds only what
    # `kubectl get marketfeed -o yaml` readers need.
    settings.persistence.finalizer = f"{GROUP}/feed"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    # Kubernetes events (`kubectl describe marketfeed`) for problems only, not every success.
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "fairprice-operator"
    return settings


def _register_login(registry: kopf.OperatorRegistry, section: OperatorSection) -> None:
    if section.api_server is not None:
        server = section.api_server

        def login_to_api_server(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=server)

        kopf.on.login(registry=registry, id="api-server")(login_to_api_server)
    else:
        kopf.on.login(registry=registry, id="service-account")(kopf.login_with_service_account)
        kopf.on.login(registry=registry, id="kubeconfig")(kopf.login_with_kubeconfig)


def _restore_signals() -> None:
    """Undo kopf's SIGTERM/SIGINT handlers: they point at a finished operator."""
    if threading.current_thread() is threading.main_thread():
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
