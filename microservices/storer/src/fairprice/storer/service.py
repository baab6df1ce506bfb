"""The storer service: every stream's messages into InfluxDB, acked once InfluxDB has them.

``run`` is the whole service (tests drive it in-process). Start-up: HTTP endpoints first (so
/healthz answers while dependencies come up), then NATS, then InfluxDB's database and retention
policy (retried until InfluxDB answers), the streams, the dead-letter stream, and one durable
pull consumer per stream shared by every replica. Shutdown, once ``stop`` is set: not ready,
each worker finishes and acks the batch it holds, consumers hand back what they buffered, NATS
drains, HTTP closes.
"""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CollectorRegistry

from fairprice.common.bus import connect_bus, ensure_streams
from fairprice.common.consumer import PullConsumer
from fairprice.common.errors import StoppedError
from fairprice.common.health import HealthServer, Readiness
from fairprice.common.lifecycle import install_signal_handlers, wait_or_stop
from fairprice.common.logs import get_logger
from fairprice.common.subjects import Stream
from fairprice.storer.alertmanager import AlertmanagerDelivery
from fairprice.storer.deadletter import DeadLetters
from fairprice.storer.influx import InfluxUnavailableError, InfluxWriter
from fairprice.storer.line_protocol import LineEncoder
from fairprice.storer.metrics import StorerMetrics
from fairprice.storer.provisioning import provision
from fairprice.storer.retention import open_ledger
from fairprice.storer.settings import StorerSection, StorerSettings
from fairprice.storer.worker import StreamWorker

__all__ = ["run"]

log = get_logger(__name__)


async def run(
    settings: StorerSettings,
    *,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    registry: CollectorRegistry | None = None,
) -> None:
    """Run the storer until ``stop`` is set (SIGTERM/SIGINT when not given)."""
    stop = stop or install_signal_handlers()
    registry = registry if registry is not None else CollectorRegistry()
    metrics = StorerMetrics(registry)
    section = settings.storer
    readiness = Readiness("nats", "influx", "consumers")
    async with contextlib.AsyncExitStack() as stack:
        influx = await stack.enter_async_context(InfluxWriter(settings.influx))
        await stack.enter_async_context(HealthServer(section.http, registry, readiness))
        bus = await stack.enter_async_context(
            connect_bus(settings.nats, name="fairprice-storer", readiness=readiness, stop=stop)
        )
        if not await _prepare_database(settings, readiness, stop):
            return
        # Their writers own them (update them); the storer creates one only when missing.
        await ensure_streams(bus.jsm, settings.nats.streams, update=False)
        deadletters = DeadLetters(bus, settings.nats.streams, section.deadletter_max_age_s)
        await deadletters.ensure_stream()

        workers = []
        for stream in Stream:
            consumer = await stack.enter_async_context(
                PullConsumer(
                    bus,
                    stream,
                    section.consumers.of(stream),
                    ack_wait=section.ack_wait_s,
                    max_ack_pending=section.max_ack_pending,
                    batch=section.batch_size,
                )
            )
            # Every replica's deliveries, from where the consumer stands before this one
            # pulls: losses to retention are counted exactly (retention.py).
            losses = await stack.enter_async_context(
                open_ledger(
                    bus,
                    stream.value,
                    section.consumers.of(stream),
                    stream.prefix,
                    metrics.messages_lost.labels(stream.prefix),
                )
            )
            workers.append(
                StreamWorker(
                    stream,
                    consumer,
                    _encoder(stream, section),
                    influx,
                    deadletters,
                    metrics,
                    section,
                    readiness,
                    stop,
                    losses,
                )
            )
        delivery = None
        if section.alertmanager.url is not None:
            alerts = await stack.enter_async_context(
                PullConsumer(
                    bus,
                    Stream.ALERTS,
                    section.alertmanager.consumer,
                    ack_wait=section.ack_wait_s,
                    max_ack_pending=1000,
                    batch=100,
                )
            )
            delivery = AlertmanagerDelivery(
                alerts,
                section.alertmanager,
                section.retry,
                deadletters,
                metrics.alertmanager_posts,
                stop,
            )
        readiness.set("consumers", True)
        if ready is not None:
            ready.set()
        log.info(
            "storer started",
            influx=settings.influx.url,
            api=settings.influx.api,
            batch_size=section.batch_size,
            books=section.books.mode,
        )
        async with asyncio.TaskGroup() as tg:
            for worker in workers:
                tg.create_task(worker.run(), name="storer-worker")
            tg.create_task(_watch(influx, section, readiness, stop), name="storer-watch")
            if delivery is not None:
                tg.create_task(delivery.run(), name="storer-alertmanager")
    log.info("storer stopped")


def _encoder(stream: Stream, section: StorerSection) -> LineEncoder:
    if stream is Stream.BOOKS and section.books.mode == "interval":
        return LineEncoder(books_interval_ms=max(1, round(section.books.interval_s * 1000)))
    return LineEncoder()


async def _prepare_database(
    settings: StorerSettings, readiness: Readiness, stop: asyncio.Event
) -> bool:
    """Create the database, its retention policy and the users (``provisioning``), waiting
    for InfluxDB; False if stopped."""
    section = settings.storer

    async def waiting(exc: BaseException, attempt: int, delay: float) -> None:
        log.warning("waiting for influxdb", error=str(exc), attempt=attempt + 1)

    try:
        await section.retry.backoff().retry(
            lambda: provision(settings.influx, section.provisioning),
            stop=stop,
            what="InfluxDB was reachable",
            transient=(InfluxUnavailableError,),
            on_retry=waiting,
        )
    except StoppedError:
        return False
    readiness.set("influx", True)
    return True


async def _watch(
    influx: InfluxWriter, section: StorerSection, readiness: Readiness, stop: asyncio.Event
) -> None:
    """Keep the ``influx`` condition current while no writes are flowing; turn not ready as
    soon as stop is asked for."""
    while not await wait_or_stop(stop, section.influx_ping_s):
        try:
            await influx.ping()
        except InfluxUnavailableError:
            readiness.set("influx", False)
        else:
            readiness.set("influx", True)
    readiness.set("consumers", False)
