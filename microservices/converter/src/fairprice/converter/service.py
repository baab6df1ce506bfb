"""The converter service: ``run(settings, stop=, ready=, registry=)``.

Start-up order matters for "nothing missed": the live tail of BOOKS is positioned (at the
stream's end) *before* membership is joined and any partition taken over, so every book stored
after a takeover's replay began is delivered live. Shutdown: not ready, leave the membership
(the others take the partitions over at once), finish the batch, wait for every publish to be
acked, drain, close HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from prometheus_client import CollectorRegistry

from fairprice.common.bus import connect_bus, ensure_streams
from fairprice.common.errors import BrokerError, InvalidMessageError
from fairprice.common.feeds import read_feeds
from fairprice.common.health import HealthServer, Readiness
from fairprice.common.kv import Bucket, open_bucket
from fairprice.common.lifecycle import install_signal_handlers, wait_or_stop
from fairprice.common.logs import get_logger
from fairprice.common.membership import Membership
from fairprice.common.messages import Book, decode
from fairprice.common.publisher import Publisher
from fairprice.common.subjects import Stream
from fairprice.common.tail_set import TailSet
from fairprice.converter.converter import Converter
from fairprice.converter.metrics import ConverterMetrics
from fairprice.converter.params import params_by_symbol
from fairprice.converter.settings import ConverterSettings

__all__ = ["run"]

OUTPUT_STREAMS = (Stream.PRICES, Stream.SIGNALS, Stream.CANDLES, Stream.ALERTS)
"""The streams the converter writes, and owns (creates and updates)."""

log = get_logger(__name__)

_RESCAN_S = 30.0


async def run(
    settings: ConverterSettings,
    *,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    registry: CollectorRegistry | None = None,
) -> None:
    stop = stop or install_signal_handlers()
    registry = registry or CollectorRegistry()
    section = settings.converter
    metrics = ConverterMetrics(registry)
    readiness = Readiness("nats", "rebuilt")
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(HealthServer(section.http, registry, readiness))
        bus = await stack.enter_async_context(
            connect_bus(settings.nats, name="converter", readiness=readiness, stop=stop)
        )
        # It owns what it writes; BOOKS is the crawler's, created here only when missing.
        await ensure_streams(bus.jsm, settings.nats.streams, OUTPUT_STREAMS)
        await ensure_streams(bus.jsm, settings.nats.streams, (Stream.BOOKS,), update=False)
        await open_bucket(bus.js, Bucket.LATEST)  # the publisher puts to its subjects
        await open_bucket(bus.js, Bucket.FEEDS)  # read by snapshots: created when missing
        publisher = await stack.enter_async_context(
            Publisher(bus.nc, max_in_flight=section.max_in_flight)
        )
        # Follows nothing until ownership is placed; then the owned partitions only, each
        # from the stream's end at that moment (before any takeover replays what came before).
        live = await stack.enter_async_context(TailSet(bus, Stream.BOOKS))
        membership = await stack.enter_async_context(
            Membership(
                bus,
                "converter",
                heartbeat_s=section.heartbeat_s,
                ttl_s=section.member_ttl_s,
            )
        )
        partitions = settings.nats.streams.partitions
        converter = Converter(
            section, partitions, bus, live, publisher, metrics, readiness, membership.member_id
        )
        await converter.set_params(params_by_symbol((await read_feeds(bus)).values(), section))
        log.info("converter starting", member=membership.member_id, partitions=partitions)

        async def consume() -> None:
            while not stop.is_set():
                msgs = await live.next_batch(section.batch, 0.25)
                if msgs:
                    await converter.handle(msgs)
                    metrics.pending.set(live.pending)
                    received_ms = _receive_time_ms(msgs[-1].data)
                    if received_ms:
                        metrics.latency.observe(max(time.time() - received_ms / 1000, 0.0))
            readiness.set("rebuilt", False)

        async def own() -> None:
            seen = -1
            rescanned = time.monotonic()
            while not stop.is_set():
                if membership.version != seen:
                    seen = membership.version
                    try:
                        await converter.set_members(membership.members)
                    except BrokerError as exc:
                        log.warning("ownership update failed", error=str(exc))
                        seen = -1
                elif time.monotonic() - rescanned > _RESCAN_S:
                    rescanned = time.monotonic()
                    with contextlib.suppress(BrokerError):
                        await converter.rescan()
                if ready is not None and readiness.ready:
                    ready.set()
                # Membership changes at the pace of heartbeats; a short poll is plenty.
                await wait_or_stop(stop, 0.2)

        async def write_latest() -> None:
            while not await wait_or_stop(stop, section.latest_interval_s):
                await converter.write_latest()

        async def follow_feeds() -> None:
            while not await wait_or_stop(stop, section.feeds_refresh_s):
                try:
                    feeds = await read_feeds(bus)
                except BrokerError as exc:
                    log.warning("feeds not read", error=str(exc))
                    continue
                await converter.set_params(params_by_symbol(feeds.values(), section))

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(consume(), name="converter-consume")
                tg.create_task(own(), name="converter-own")
                tg.create_task(write_latest(), name="converter-latest")
                tg.create_task(follow_feeds(), name="converter-feeds")
        finally:
            readiness.set("rebuilt", False)
            await converter.close()
        log.info("converter stopped")


def _receive_time_ms(data: bytes) -> int:
    try:
        return decode(data, Book).receive_time_ms
    except InvalidMessageError:
        return 0
