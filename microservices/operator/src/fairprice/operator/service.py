"""The operator service: kopf embedded in the service's own lifecycle.

``run`` serves /healthz /readyz /metrics on the service's event loop, and runs kopf's operator
in a thread with an event loop of its own (kopf's documented embedding), driven by
``stop_flag`` / ``ready_flag`` futures: our ``stop`` event stops kopf gracefully (it finishes
the handlers in flight), and kopf's readiness (watching started) is the ``kubernetes``
condition of /readyz.

Why a thread: when kopf stops, it treats every task created on its loop after its start as one
of its own, waits 5 s for them and cancels them, whoever made them (a NATS reconnection's
reader, an HTTP keep-alive connection, a test's client). On a loop of its own, kopf and the
NATS connection its handlers use can only take each other down, never the rest of the service.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
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

Flag = concurrent.futures.Future[None]


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
    readiness = Readiness("nats", "kubernetes")
    metrics = OperatorMetrics(registry)
    stop_flag: Flag = concurrent.futures.Future()
    ready_flag: Flag = concurrent.futures.Future()

    async def announce_ready() -> None:
        await asyncio.wrap_future(ready_flag)
        readiness.set("kubernetes", True)
        namespaces = settings.operator.watched_namespaces()
        log.info("watching MarketFeeds", namespaces=namespaces or "all")
        if ready is not None:
            ready.set()

    async def relay_stop() -> None:
        await stop.wait()
        readiness.set("kubernetes", False)
        _raise(stop_flag)

    async with HealthServer(settings.operator.http, registry, readiness):
        # Not a TaskGroup: it would wrap kopf's own error (a FatalError's exit code) in an
        # ExceptionGroup.
        helpers = [
            asyncio.create_task(announce_ready(), name="operator-ready"),
            asyncio.create_task(relay_stop(), name="operator-stop"),
        ]
        try:
            await asyncio.to_thread(
                _operator_thread, settings, readiness, metrics, stop_flag, ready_flag
            )
        finally:
            # Whatever ended kopf (our stop, an error), the service ends with it.
            _raise(stop_flag)
            readiness.set("kubernetes", False)
            stop.set()
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
    log.info("operator stopped")


def _operator_thread(
    settings: OperatorSettings,
    readiness: Readiness,
    metrics: OperatorMetrics,
    stop_flag: Flag,
    ready_flag: Flag,
) -> None:
    asyncio.run(_operate(settings, readiness, metrics, stop_flag, ready_flag))


async def _operate(
    settings: OperatorSettings,
    readiness: Readiness,
    metrics: OperatorMetrics,
    stop_flag: Flag,
    ready_flag: Flag,
) -> None:
    """kopf's loop: its own NATS connection, the handlers, and kopf until ``stop_flag``."""
    section = settings.operator
    stopping = asyncio.Event()  # stops waiting for an unreachable NATS
    stop_waiter = asyncio.wrap_future(stop_flag)
    stop_waiter.add_done_callback(lambda _: stopping.set())
    async with contextlib.AsyncExitStack() as stack:
        # Unhook from the flag before this loop closes (kopf does the same with its own).
        stack.callback(stop_waiter.cancel)
        bus = await stack.enter_async_context(
            connect_bus(
                settings.nats, name="fairprice-operator", readiness=readiness, stop=stopping
            )
        )
        feeds = await open_bucket(bus.js, Bucket.FEEDS, replicas=settings.nats.streams.replicas)
        registry = kopf.OperatorRegistry()
        FeedHandlers(
            feeds, LatestReader(bus.js), section, metrics, stopping=stop_flag.done
        ).register(registry)
        _register_login(registry, section)
        namespaces = section.watched_namespaces()
        await kopf.operator(
            registry=registry,
            settings=kopf_settings(),
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )


def _raise(flag: Flag) -> None:
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        flag.set_result(None)


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
    # Handler problems (a refused spec, NATS unreachable) become Kubernetes events, shown by
    # `kubectl describe marketfeed`; successes are not posted.
    settings.posting.loggers = True
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "fairprice-operator"
    # A deleted object keeps its finalizer until its status timer has exited. A timer caught
    # mid-refresh does not exit "instantly", and kopf looks again only after this long
    # (default 60 s): the object would linger a minute after `kubectl delete`. A refresh takes
    # milliseconds, so look again soon.
    settings.background.cancellation_polling = 0.5
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
