"""One stream's path into InfluxDB: pull a batch, encode it, write it, then ack it.

A collector and ``writes_in_flight`` writers per stream, joined by a queue of one batch: while
InfluxDB ingests batch N, the collector pulls and encodes batch N+1 (on a 2-core machine
influxd and the storer then use a core each instead of taking turns), and a second writer keeps
influxd busy while the first one's response travels. Batches are independent (a point is keyed
by its own timestamp), so their order of writing does not matter. A message is acked only once
InfluxDB accepted the write that holds it, or once its dead letter is stored. What the process
holds unacked is bounded by the consumer's ``max_ack_pending``: at most the batches being
written, the one queued behind them and the consumer's buffer. Messages the stream discarded
before any replica was given them are counted and logged (retention.py).

A write that InfluxDB refuses for bad points is bisected: each half is written again until
the bad messages stand alone; those become dead letters and everything else is stored. A
write that fails for any other reason (InfluxDB down, 5xx, timeout) is retried with capped
exponential backoff, forever, acking nothing; on shutdown the unwritten messages are nak'ed
so that another replica (or the next run) takes them at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from nats.aio.msg import Msg

from fairprice.common.consumer import PullConsumer
from fairprice.common.errors import InvalidMessageError, StoppedError
from fairprice.common.health import Readiness
from fairprice.common.intervals import INTERVAL_MS
from fairprice.common.logs import get_logger
from fairprice.common.messages import Alert, Book, BookHead, Candle, FairPrice, Signal, decode
from fairprice.common.subjects import Stream
from fairprice.storer.deadletter import DeadLetterError, DeadLetters
from fairprice.storer.influx import InfluxUnavailableError, InfluxWriter, PointsRejectedError
from fairprice.storer.line_protocol import (
    ALERT,
    CANDLE,
    FAIR_PRICE,
    INDICATOR,
    ORDERBOOK,
    SIGNAL,
    LineEncoder,
)
from fairprice.storer.metrics import StorerMetrics
from fairprice.storer.retention import LedgerFeed
from fairprice.storer.settings import StorerSection

__all__ = ["StreamWorker"]

log = get_logger(__name__)

_ENCODE_SLICE = 200

Encoded = tuple[str | None, int, tuple[str, ...]]
"""A message's lines (``None``: not stored), its event time (ms) and its measurements."""


@dataclass(slots=True)
class _Entry:
    msg: Msg
    lines: str
    event_ms: int
    measurements: tuple[str, ...]


@dataclass(slots=True)
class _Batch:
    entries: list[_Entry] = field(default_factory=list)
    thinned: list[Msg] = field(default_factory=list)
    invalid: list[tuple[Msg, str]] = field(default_factory=list)


def codec(stream: Stream, encoder: LineEncoder) -> Callable[[bytes], Encoded]:
    """Decode a message of ``stream`` and encode it as line protocol."""
    if stream is Stream.BOOKS:

        def books(data: bytes) -> Encoded:
            book = decode(data, Book)
            return encoder.book(book), book.event_time_ms, (ORDERBOOK,)

        def thinned_books(data: bytes) -> Encoded:
            # Thinned to one a symbol per interval, most books are left out: their levels are
            # not decoded at all (nor checked: a book not stored cannot be stored wrong).
            head = decode(data, BookHead)
            if encoder.thinned(head):
                return None, head.event_time_ms, (ORDERBOOK,)
            return books(data)

        return thinned_books if encoder.thins else books
    if stream is Stream.PRICES:
        with_sma = (FAIR_PRICE, INDICATOR)

        def prices(data: bytes) -> Encoded:
            price = decode(data, FairPrice)
            both = price.sma_fast is not None and price.sma_slow is not None
            return (
                encoder.fair_price(price),
                price.event_time_ms,
                with_sma if both else (FAIR_PRICE,),
            )

        return prices
    if stream is Stream.SIGNALS:

        def signals(data: bytes) -> Encoded:
            signal = decode(data, Signal)
            return encoder.signal(signal), signal.event_time_ms, (SIGNAL,)

        return signals
    if stream is Stream.ALERTS:

        def alerts(data: bytes) -> Encoded:
            alert = decode(data, Alert)
            return encoder.alert(alert), alert.event_time_ms, (ALERT,)

        return alerts

    def candles(data: bytes) -> Encoded:
        candle = decode(data, Candle)
        # A candle exists once its period is over: its latency counts from the close.
        return encoder.candle(candle), candle.start_ms + INTERVAL_MS[candle.interval], (CANDLE,)

    return candles


class StreamWorker:
    def __init__(
        self,
        stream: Stream,
        consumer: PullConsumer,
        encoder: LineEncoder,
        influx: InfluxWriter,
        deadletters: DeadLetters,
        metrics: StorerMetrics,
        settings: StorerSection,
        readiness: Readiness,
        stop: asyncio.Event,
        losses: LedgerFeed,
    ) -> None:
        self._stream = stream
        self._label = stream.prefix
        self._consumer = consumer
        self._codec = codec(stream, encoder)
        self._influx = influx
        self._deadletters = deadletters
        self._metrics = metrics
        self._settings = settings
        self._backoff = settings.retry.backoff()
        self._readiness = readiness
        self._stop = stop
        self._failing = False
        self._losses = losses

    async def run(self) -> None:
        """Store until ``stop`` is set, then finish what was pulled and return."""
        queue: asyncio.Queue[_Batch | None] = asyncio.Queue(maxsize=1)
        writers = self._settings.writes_in_flight
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._collect(queue, writers), name=f"storer-collect-{self._label}")
            for n in range(writers):
                tg.create_task(self._store_all(queue), name=f"storer-write-{self._label}-{n}")

    async def _collect(self, queue: asyncio.Queue[_Batch | None], writers: int) -> None:
        size, delay = self._settings.batch_size, self._settings.max_delay_s
        lag = self._metrics.consumer_lag.labels(self._label)
        while not self._stop.is_set():
            msgs = await self._consumer.next_batch(size, delay)
            lag.set(self._consumer.pending)
            await self._losses.observe(msgs)
            if msgs:
                await queue.put(await self._encode(msgs))
        # Only on a clean stop: after an error the task group cancels the writers anyway, and
        # the messages they held come back after ack_wait. One end mark per writer.
        for _ in range(writers):
            await queue.put(None)

    async def _encode(self, msgs: list[Msg]) -> _Batch:
        batch = _Batch()
        encode = self._codec
        for n, msg in enumerate(msgs):
            if n % _ENCODE_SLICE == 0:
                # Encoding a whole batch takes ~0.1 s of CPU; the writer's request body and the
                # consumer's deliveries only move while the event loop runs. Yielding between
                # slices lets InfluxDB ingest one batch while the next is encoded.
                await asyncio.sleep(0)
            try:
                lines, event_ms, measurements = encode(msg.data)
            except InvalidMessageError as exc:
                batch.invalid.append((msg, str(exc)))
                continue
            if lines is None:
                batch.thinned.append(msg)
            else:
                batch.entries.append(_Entry(msg, lines, event_ms, measurements))
        return batch

    async def _store_all(self, queue: asyncio.Queue[_Batch | None]) -> None:
        while (batch := await queue.get()) is not None:
            await self._store(batch)

    async def _store(self, batch: _Batch) -> None:
        try:
            rejected = await self._write(batch.entries) if batch.entries else []
            for msg, reason in batch.invalid:
                await self._dead_letter(msg, reason, "invalid")
            for entry, reason in rejected:
                await self._dead_letter(entry.msg, reason, "rejected")
        except StoppedError:  # while waiting to retry: give the batch back unacked
            for msg in [e.msg for e in batch.entries] + batch.thinned:
                await msg.nak()
            for msg, _ in batch.invalid:
                await msg.nak()
            return
        messages = self._metrics.messages
        messages.labels(self._label, "stored").inc(len(batch.entries) - len(rejected))
        messages.labels(self._label, "thinned").inc(len(batch.thinned))
        messages.labels(self._label, "dead_letter").inc(len(batch.invalid) + len(rejected))
        for entry in batch.entries:
            await entry.msg.ack()
        for msg in batch.thinned:
            await msg.ack()
        for msg, _ in batch.invalid:
            await msg.ack()

    async def _write(self, entries: list[_Entry]) -> list[tuple[_Entry, str]]:
        """Write ``entries``; the ones InfluxDB refuses, each alone, with its reason."""
        body = "\n".join([entry.lines for entry in entries]).encode()
        try:
            await self._write_until_done(body, entries)
        except PointsRejectedError as exc:
            self._metrics.rejected_writes.inc()
            if len(entries) == 1:
                log.warning(
                    "point rejected", stream=self._label, status=exc.status, reason=exc.reason
                )
                return [(entries[0], exc.reason)]
            half = len(entries) // 2
            return await self._write(entries[:half]) + await self._write(entries[half:])
        return []

    async def _write_until_done(self, body: bytes, entries: list[_Entry]) -> None:
        """Write ``body`` once InfluxDB takes it; ``PointsRejectedError`` if it never will."""
        started = 0.0

        async def write() -> None:
            nonlocal started
            started = time.perf_counter()
            await self._influx.write(body)

        async def failed(exc: BaseException, attempt: int, delay: float) -> None:
            kind = exc.kind if isinstance(exc, InfluxUnavailableError) else "unavailable"
            self._metrics.write_errors.labels(kind).inc()
            self._readiness.set("influx", False)
            self._failing = True
            log.warning(
                "influxdb write failed, retrying",
                stream=self._label,
                kind=kind,
                error=str(exc),
                attempt=attempt + 1,
                retry_in_s=round(delay, 2),
            )
            self._metrics.write_retries.inc()
            if kind == "not_found":
                await self._recreate_database()

        await self._backoff.retry(
            write,
            stop=self._stop,
            what="the batch was written",
            transient=(InfluxUnavailableError,),
            on_retry=failed,
        )
        now = time.time()
        self._metrics.write_latency.observe(time.perf_counter() - started)
        if self._failing:
            log.info("influxdb writes resumed", stream=self._label)
            self._failing = False
        self._readiness.set("influx", True)
        counts = Counter([name for entry in entries for name in entry.measurements])
        for measurement, count in counts.items():
            self._metrics.points_written.labels(measurement).inc(count)
        self._metrics.batch_points.observe(sum(counts.values()))
        e2e = self._metrics.end_to_end_latency.labels(self._label)
        for entry in entries:
            e2e.observe(now - entry.event_ms / 1000)

    async def _recreate_database(self) -> None:
        """A database or retention policy dropped behind our back is created again."""
        try:
            await self._influx.ensure_database()
        except InfluxUnavailableError as exc:
            log.warning("cannot create the influxdb database", error=str(exc))

    async def _dead_letter(self, msg: Msg, reason: str, why: str) -> None:
        async def failed(exc: BaseException, attempt: int, delay: float) -> None:
            log.warning("dead letter not stored, retrying", error=str(exc), attempt=attempt + 1)

        await self._backoff.retry(
            lambda: self._deadletters.send(self._stream, msg, reason),
            stop=self._stop,
            what="the dead letter was stored",
            transient=(DeadLetterError,),
            on_retry=failed,
        )
        self._metrics.dead_letters.labels(self._label, why).inc()
        log.warning("message dead-lettered", stream=self._label, subject=msg.subject, why=why)
