"""The price API service: uvicorn serving the FastAPI app, plus the stream window.

``run`` is the whole service (tests drive it in-process). Start-up: /healthz, /readyz and
/metrics first (common's ``HealthServer`` on ``[api.http] port``), then NATS, the stream window
(filled from ``resume_window_s`` ago), then the API itself on ``[api] port``. It is stateless:
every replica answers every request, so it scales by replica count (or the chart's HPA).
Shutdown, once ``stop`` is set: not ready, the window closes (each stream client gets a
``close`` event), uvicorn stops, NATS drains, HTTP closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from prometheus_client import CollectorRegistry

from fairprice.api.app import Backends, create_app
from fairprice.api.history import HistoryReader, InfluxUnavailableError
from fairprice.api.latest import LatestReader
from fairprice.api.metrics import ApiMetrics
from fairprice.api.settings import ApiSection, ApiSettings
from fairprice.api.stream import STREAMS, StreamWindow
from fairprice.common.bus import connect_bus, ensure_streams
from fairprice.common.health import HealthServer, Readiness
from fairprice.common.lifecycle import install_signal_handlers, wait_or_stop
from fairprice.common.logs import get_logger

__all__ = ["ApiServer", "listening_socket", "run"]

log = get_logger(__name__)


class ApiServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service's ``stop`` event rules."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def listening_socket(config: uvicorn.Config) -> socket.socket:
    """The API's socket, bound at once (so its port is known with port 0, before serving).

    TCP_NODELAY on the listening socket, which the accepted ones inherit: asyncio sets it on
    the connections of servers it creates itself, not on those of a socket handed to it, and
    without it every small response waits for the peer's delayed ACK (measured: 22 requests/s
    instead of ~6,000 on one keep-alive connection).
    """
    sock = config.bind_socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


async def run(
    settings: ApiSettings,
    *,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    registry: CollectorRegistry | None = None,
    ports: dict[str, int] | None = None,
) -> None:
    """Run the API until ``stop`` is set (SIGTERM/SIGINT when not given). ``ports``, when
    given, receives the bound ports (``api``, ``http``): useful with port 0."""
    stop = stop or install_signal_handlers()
    registry = registry if registry is not None else CollectorRegistry()
    metrics = ApiMetrics(registry)
    section = settings.api
    readiness = Readiness("nats", "influx", "stream")
    async with contextlib.AsyncExitStack() as stack:
        health = await stack.enter_async_context(HealthServer(section.http, registry, readiness))
        if ports is not None:
            ports["http"] = health.port
        history = await stack.enter_async_context(HistoryReader(settings.influx))
        bus = await stack.enter_async_context(
            connect_bus(settings.nats, name="fairprice-api", readiness=readiness, stop=stop)
        )
        await ensure_streams(bus.jsm, settings.nats.streams, STREAMS, update=False)
        window = StreamWindow(
            bus, buffer=section.stream.buffer, resume_window_s=section.stream.resume_window_s
        )
        app = create_app(section, metrics)
        app.state.backends = Backends(LatestReader(bus), history, window)
        config = uvicorn.Config(
            app,
            host=section.host,
            port=section.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            http="httptools",
            timeout_graceful_shutdown=5,
        )
        server = ApiServer(config)
        sock = listening_socket(config)
        stack.callback(sock.close)
        port = int(sock.getsockname()[1])
        if ports is not None:
            ports["api"] = port
        window_stop = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            # The window: every PRICES and SIGNALS message of the last while, for the streams.
            tg.create_task(window.run(window_stop), name="api-window")
            # /readyz: InfluxDB answers, the window caught up; the window's size gauge.
            tg.create_task(
                _watch(history, window, section, readiness, metrics, stop, ready),
                name="api-watch",
            )
            # The API itself.
            tg.create_task(server.serve(sockets=[sock]), name="api-http")
            log.info("api listening", host=section.host, port=port)
            await stop.wait()
            readiness.set("stream", False)
            window_stop.set()  # stream clients get their close event
            server.should_exit = True
    log.info("api stopped")


async def _watch(
    history: HistoryReader,
    window: StreamWindow,
    section: ApiSection,
    readiness: Readiness,
    metrics: ApiMetrics,
    stop: asyncio.Event,
    ready: asyncio.Event | None,
) -> None:
    """Keep /readyz and the window gauge current; ``ready`` is set once /readyz answers 200."""
    while True:
        try:
            await history.ping()
        except InfluxUnavailableError:
            readiness.set("influx", False)
        else:
            readiness.set("influx", True)
        readiness.set("stream", window.caught_up.is_set())
        metrics.stream_window.set(window.size)
        if ready is not None and readiness.ready:
            ready.set()
        delay = 0.2 if not window.caught_up.is_set() else section.influx_ping_s
        if await wait_or_stop(stop, delay):
            return
