"""Messages a stream discarded (its ``max_bytes`` or ``max_age``, discard old) before the
storer's consumer delivered them: stored nowhere, and counted here, exactly, however many
storer replicas share the consumer.

The storer's consumers take every subject of their stream, so JetStream hands the stream's
messages out in stream order, each delivery (redeliveries too) under the next consumer
sequence. A message the stream discarded before its turn is skipped: the next first delivery's
stream sequence jumps over it, and nobody was ever given it. So, in consumer-sequence order,
the loss before a first delivery is its stream sequence minus that of the first delivery
before it, minus one; a redelivery takes a consumer sequence and no stream sequence.

Each replica sees only its share of the deliveries. So each announces what it received, per
batch, on core NATS (``storer_deliveries_subject``: runs of consecutive consumer sequences
with their stream sequences, redeliveries marked), and every replica follows every
announcement, its own included, in consumer-sequence order (``DeliveryLedger``). A replica
counts the loss before its own first deliveries only: each loss is counted once, by the
replica that was given the message after it, so the metric summed over the replicas is exact
(one replica, the default, is the same case).

A consumer sequence that nobody announces within ``hold_s`` (a replica killed between its
fetch and its announcement; a delivery lost on the way, which JetStream redelivers) is passed
over and logged: the gap after it is not counted, since the deliveries passed over may have
been first deliveries. A replica starts from the consumer's position (its info, read after
subscribing), so a loss while no storer ran shows at its first delivery.

Messages delivered and held while InfluxDB is down are not lost when the stream discards them:
the storer writes them from memory once InfluxDB is back.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import msgspec
from nats.aio.msg import Msg
from prometheus_client import Counter

from fairprice.common.bus import Bus
from fairprice.common.delivery import delivery
from fairprice.common.logs import get_logger
from fairprice.common.subjects import storer_deliveries_subject

__all__ = ["DeliveryLedger", "LedgerFeed", "Run", "open_ledger", "runs_of"]

log = get_logger(__name__)

HOLD_S = 10.0
"""How long a consumer sequence nobody announced holds the ledger up."""


class Run(msgspec.Struct, array_like=True, frozen=True):
    """``count`` deliveries under consecutive consumer sequences from ``consumer_seq``: first
    deliveries of consecutive stream sequences from ``stream_seq``, or redeliveries
    (``stream_seq`` 0)."""

    consumer_seq: int
    stream_seq: int
    count: int


class Announcement(msgspec.Struct, frozen=True):
    replica: str
    runs: list[Run]


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Announcement)


def runs_of(msgs: list[Msg]) -> list[Run]:
    """The deliveries of ``msgs`` (in the order received) as runs."""
    runs: list[Run] = []
    for msg in msgs:
        meta = delivery(msg)
        seq = meta.stream_seq if meta.delivered == 1 else 0
        if runs:
            last = runs[-1]
            follows = meta.consumer_seq == last.consumer_seq + last.count
            if follows and (seq == last.stream_seq + last.count if seq else not last.stream_seq):
                runs[-1] = Run(last.consumer_seq, last.stream_seq, last.count + 1)
                continue
        runs.append(Run(meta.consumer_seq, seq, 1))
    return runs


class DeliveryLedger:
    """One replica's view of every delivery of one consumer, counting its own losses."""

    def __init__(self, stream: str, lost: Counter, *, hold_s: float = HOLD_S) -> None:
        self.replica = uuid.uuid4().hex
        self._stream = stream
        self._lost = lost
        self._hold_s = hold_s
        self._next: int | None = None
        """The next consumer sequence to account for (``None``: before the consumer's info)."""
        self._last_seq: int | None = None
        """Stream sequence of the last first delivery (``None``: not known)."""
        self._pending: dict[int, tuple[Run, bool]] = {}
        """Runs not reached yet, by first consumer sequence, and whether they are ours."""
        self._held_since: float | None = None

    def start_at(self, consumer_seq: int, stream_seq: int) -> None:
        """The consumer's position before this replica pulls (``delivered`` of its info)."""
        self._next = consumer_seq + 1
        self._last_seq = stream_seq
        self._advance()

    def announcement(self, msgs: list[Msg]) -> bytes:
        return _encoder.encode(Announcement(self.replica, runs_of(msgs)))

    def receive(self, data: bytes) -> None:
        """An announcement of any replica (this one's too)."""
        try:
            announced = _decoder.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            log.warning("ignoring an invalid delivery announcement", error=str(exc))
            return
        ours = announced.replica == self.replica
        for run in announced.runs:
            self._pending[run.consumer_seq] = (run, ours)
        self._advance()

    def _advance(self) -> None:
        if self._next is None:
            return
        while self._pending:
            found = self._pending.pop(self._next, None)
            if found is None:
                found = self._overlapping()
            if found is None:
                if not self._held():
                    return
                self._pass_over()
                continue
            self._held_since = None
            run, ours = found
            if run.stream_seq:
                gone = run.stream_seq - self._last_seq - 1 if self._last_seq is not None else 0
                if ours and gone > 0:
                    self._count(gone, run.stream_seq)
                self._last_seq = run.stream_seq + run.count - 1
            self._next = run.consumer_seq + run.count

    def _overlapping(self) -> tuple[Run, bool] | None:
        """A run that started before ``_next`` (this replica started inside it), trimmed to
        its part from ``_next``; older ones are dropped."""
        assert self._next is not None
        for start in [s for s in self._pending if s < self._next]:
            run, ours = self._pending.pop(start)
            skip = self._next - start
            if skip < run.count:
                stream_seq = run.stream_seq + skip if run.stream_seq else 0
                return Run(self._next, stream_seq, run.count - skip), ours
        return None

    def _held(self) -> bool:
        now = time.monotonic()
        if self._held_since is None:
            self._held_since = now
        return now - self._held_since >= self._hold_s

    def _pass_over(self) -> None:
        assert self._next is not None
        resume = min(self._pending)
        log.warning(
            "deliveries nobody announced: losses right after them are not counted",
            stream=self._stream,
            first_consumer_seq=self._next,
            last_consumer_seq=resume - 1,
        )
        self._next, self._last_seq, self._held_since = resume, None, None

    def _count(self, gone: int, next_seq: int) -> None:
        assert self._last_seq is not None
        self._lost.inc(gone)
        log.error(
            "messages discarded by the stream before they were stored",
            stream=self._stream,
            first_seq=self._last_seq + 1,
            last_seq=next_seq - 1,
            count=gone,
        )


class LedgerFeed:
    """Announces this replica's deliveries; the ledger hears them all."""

    def __init__(self, bus: Bus, subject: str, ledger: DeliveryLedger) -> None:
        self._bus = bus
        self._subject = subject
        self.ledger = ledger

    async def observe(self, msgs: list[Msg]) -> None:
        """Announce ``msgs``, in the order this replica received them."""
        if msgs:
            await self._bus.nc.publish(self._subject, self.ledger.announcement(msgs))


@contextlib.asynccontextmanager
async def open_ledger(
    bus: Bus, stream: str, consumer: str, label: str, lost: Counter
) -> AsyncIterator[LedgerFeed]:
    """Follow the announcements of ``consumer``'s replicas from its current position."""
    ledger = DeliveryLedger(label, lost)

    async def on_msg(msg: Msg) -> None:
        ledger.receive(msg.data)

    subject = storer_deliveries_subject(stream, consumer)
    # Unbounded: an announcement dropped as a slow consumer's would hold the ledger up.
    sub = await bus.nc.subscribe(subject, cb=on_msg, pending_msgs_limit=0, pending_bytes_limit=0)
    try:
        info = await bus.jsm.consumer_info(stream, consumer)  # after subscribing: none missed
        delivered = info.delivered
        ledger.start_at(
            (delivered.consumer_seq or 0) if delivered else 0,
            (delivered.stream_seq or 0) if delivered else 0,
        )
        yield LedgerFeed(bus, subject, ledger)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
