"""A pipelined JetStream publisher with one reply inbox and at-least-once redelivery.

``await js.publish()`` waits a round trip per message; nats-py's ``publish_async`` allocates a
future and a semaphore slot per message. Here every message goes out with a reply subject
``<inbox>.<seq>`` and one subscription callback counts the PubAcks. ``bench/bus.py`` measures
the three (1 KiB messages, one client, this 2-core machine): ~4.9k, ~24k and ~52k msg/s, at
127, 26 and 11 us of client CPU per message.

Messages stay in ``_pending`` until JetStream acks them; any not acked within ``ack_timeout``
(a lost broker, a reconnect) are sent again with the same ``Nats-Msg-Id``, which the stream's
duplicate window turns into exactly one stored message.

``publish`` blocks while ``max_in_flight`` messages await their ack: backpressure instead of
unbounded memory when the broker is slow or gone.

Order across a reconnect: what was in flight when the connection dropped is lost with it. If
new messages went out first (nats-py buffers what is published while it reconnects and sends
that first), the lost ones, resent later, would land in the stream after newer messages of
the same subject, and a reader that needs each subject in order (the converter skips a book
older than the last one it priced) would lose them. So ``publish`` waits while the connection
is down, and the first publish on a new connection resends everything unacked, in order,
before its own message. (One window stays open: messages nats-py still held unsent when the
connection dropped go out first on the new one; they are newer than the lost ones only when
both exist at that instant, within one cycle of nats-py's flusher.)
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from fairprice.common.logs import get_logger

__all__ = ["Publisher"]

log = get_logger(__name__)

_MSG_ID = "Nats-Msg-Id"


class _PubAck(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict[str, object] | None = None


_decode_ack = msgspec.json.Decoder(_PubAck).decode


class Publisher:
    """``async with Publisher(nc) as pub: await pub.publish(subject, payload, msg_id)``.

    Exiting the block waits until every published message has been acked (``flush``).
    """

    def __init__(
        self,
        nc: NATS,
        *,
        max_in_flight: int = 10_000,
        ack_timeout: float = 5.0,
        close_timeout: float = 15.0,
    ) -> None:
        self._nc = nc
        self._close_timeout = close_timeout
        self._max_in_flight = max_in_flight
        self._ack_timeout = ack_timeout
        self._inbox = nc.new_inbox()
        self._seq = 0
        # seq -> (subject, payload, headers, sent at)
        self._pending: dict[int, tuple[str, bytes, dict[str, str], float]] = {}
        self._room = asyncio.Event()
        self._room.set()
        self._drained = asyncio.Event()
        self._drained.set()
        self._sub: Subscription | None = None
        self._resender: asyncio.Task[None] | None = None
        self._reconnects = nc.stats["reconnects"]
        self.acked = 0
        self.duplicates = 0
        self.resent = 0
        self.errors = 0

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def __aenter__(self) -> Publisher:
        self._sub = await self._nc.subscribe(self._inbox + ".*", cb=self._on_ack)
        self._resender = asyncio.create_task(self._resend_loop(), name="publisher-resend")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                try:
                    # Bounded: with the broker gone a shutdown must still finish within the
                    # pod's grace period. What is left unacked was never stored; the producer's
                    # restart (or another replica) publishes it again under the same ids.
                    async with asyncio.timeout(self._close_timeout):
                        await self.flush()
                except TimeoutError:
                    log.warning("closing with unacked messages", count=len(self._pending))
        finally:
            if self._resender is not None:
                self._resender.cancel()
                await asyncio.gather(self._resender, return_exceptions=True)
            if self._sub is not None and not self._nc.is_closed:
                await self._sub.unsubscribe()

    async def publish(self, subject: str, payload: bytes, msg_id: str) -> None:
        """Send ``payload``; returns once it is on its way (not yet acked)."""
        while len(self._pending) >= self._max_in_flight:
            self._room.clear()
            await self._room.wait()
        await self._in_order()
        self._seq += 1
        headers = {_MSG_ID: msg_id}
        self._pending[self._seq] = (subject, payload, headers, time.monotonic())
        self._drained.clear()
        await self._nc.publish(
            subject, payload, reply=f"{self._inbox}.{self._seq}", headers=headers
        )

    async def _in_order(self) -> None:
        """Wait while the connection is down; on a new one, resend the unacked first."""
        # nats-py has nothing to await for "reconnected" but the callback that the
        # connection's owner (connect_bus) holds: a short poll, only while it is down.
        while not self._nc.is_connected and not self._nc.is_closed:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        reconnects = self._nc.stats["reconnects"]
        if reconnects != self._reconnects:
            self._reconnects = reconnects
            if self._pending:
                log.info("resending unacked messages after a reconnect", count=len(self._pending))
                await self._resend(list(self._pending))

    async def _resend(self, seqs: list[int]) -> None:
        for seq in seqs:
            entry = self._pending.get(seq)
            if entry is None:
                continue  # acked meanwhile
            subject, payload, headers, _ = entry
            self._pending[seq] = (subject, payload, headers, time.monotonic())
            self.resent += 1
            await self._nc.publish(subject, payload, reply=f"{self._inbox}.{seq}", headers=headers)

    async def flush(self) -> None:
        """Wait until every message published so far is acked by JetStream (callers bound
        the wait with ``asyncio.timeout`` where they must)."""
        await self._drained.wait()

    async def _on_ack(self, msg: Msg) -> None:
        seq = int(msg.subject.rpartition(".")[2])
        if seq not in self._pending:
            return  # an ack for a message already acked (it was resent)
        if msg.headers and msg.headers.get("Status") == "503":
            return  # no responders: no stream yet or a leader election; resent later
        try:
            ack = _decode_ack(msg.data)
        except msgspec.DecodeError:
            self.errors += 1
            return
        if ack.error is not None:
            # Kept pending: a stream that is full, unavailable or mid-election recovers; the
            # resend loop tries again. Counted and logged, never dropped silently.
            self.errors += 1
            log.warning("publish rejected", subject=self._pending[seq][0], error=ack.error)
            return
        del self._pending[seq]
        self.acked += 1
        self.duplicates += ack.duplicate
        if len(self._pending) < self._max_in_flight:
            self._room.set()
        if not self._pending:
            self._drained.set()

    async def _resend_loop(self) -> None:
        while True:
            await asyncio.sleep(self._ack_timeout / 4)
            if self._nc.is_reconnecting or self._nc.is_closed:
                continue
            deadline = time.monotonic() - self._ack_timeout
            stale = [seq for seq, entry in self._pending.items() if entry[3] < deadline]
            if stale:
                log.warning("resending unacked messages", count=len(stale))
                await self._resend(stale)
