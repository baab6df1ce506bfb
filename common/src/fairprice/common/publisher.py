"""A pipelined JetStream publisher with one reply inbox and at-least-once redelivery.

``await js.publish()`` waits a round trip per message; nats-py's ``publish_async`` allocates a
future and a semaphore slot per message. Here every message goes out with a reply subject
``<inbox>.<seq>`` and one subscription callback counts the PubAcks. ``bench/bus.py`` measures
the three (1 KiB messages, one client, this 2-core machine): ~4.9k, ~24k and ~52k msg/s, at
127, 26 and 11 us of client CPU per message.

Messages stay in ``_pending`` until JetStream acks them, and are sent again with the same
``Nats-Msg-Id`` until it does; the stream's duplicate window turns that into exactly one stored
message.

``publish`` blocks while ``max_in_flight`` messages await their ack: backpressure instead of
unbounded memory when the broker is slow or gone.

Order: a reader that needs each subject in order (the converter skips a book older than the
last one it priced) loses a message that lands in the stream after a newer one of its subject.
Pipelining makes that easy to do: when a message fails (no stream answered, 503: a stream
leader died and the next is not elected yet; a PubAck with an error; a dropped connection;
no ack within ``ack_timeout``: lost on the way to a dying node) and newer ones go on, the
newer ones are stored as soon as the stream answers again, the failed one only when resent.
After a NATS node of a cluster died, that reordered a few seconds of books in BOOKS and the
converter priced none of them. So the first failure pauses ``publish``: the oldest unacked
message is resent alone every ``_RETRY_S`` until the stream takes it, then all the others,
in order, and ``publish`` resumes once every one of them is acked. (Windows that stay open:
the stream leader failing again in the middle of that resend; messages nats-py still held
unsent when the connection dropped go out first on the new one; and messages that went out
after one that is lost without an answer, until ``ack_timeout`` finds it.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from fairprice.common.broker_errors import broker_errors
from fairprice.common.errors import BrokerError
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

_RETRY_S = 0.1
"""How often a paused publisher resends its oldest message (and polls a connection that is
down): an election takes seconds, so this costs a few dozen duplicates at most."""


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
        self._open = asyncio.Event()  # no failure being recovered: publish may send
        self._open.set()
        self._failed = asyncio.Event()  # the reverse, for the task that recovers
        self._failures = 0
        self._replied = asyncio.Event()  # a reply (ack or failure) for a pending message
        self._sub: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reconnects = nc.stats["reconnects"]
        self.acked = 0
        self.duplicates = 0
        self.resent = 0
        self.errors = 0
        self.refused = 0
        """Replies that refused a message: no stream answered (503) or a PubAck error."""

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def __aenter__(self) -> Publisher:
        self._sub = await self._nc.subscribe(self._inbox + ".*", cb=self._on_ack)
        self._tasks = [
            asyncio.create_task(self._watch(), name="publisher-watch"),
            asyncio.create_task(self._recover_loop(), name="publisher-recover"),
        ]
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
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._sub is not None and not self._nc.is_closed:
                await self._sub.unsubscribe()

    async def publish(self, subject: str, payload: bytes, msg_id: str) -> None:
        """Send ``payload``; returns once it is on its way (not yet acked)."""
        while len(self._pending) >= self._max_in_flight:
            self._room.clear()
            await self._room.wait()
        nc = self._nc
        # The common case, checked inline: a coroutine call per message is measurable.
        if not (
            self._open.is_set() and nc.is_connected and nc.stats["reconnects"] == self._reconnects
        ):
            await self._in_order()
        self._seq += 1
        headers = {_MSG_ID: msg_id}
        self._pending[self._seq] = (subject, payload, headers, time.monotonic())
        self._drained.clear()
        await nc.publish(subject, payload, reply=f"{self._inbox}.{self._seq}", headers=headers)

    async def _in_order(self) -> None:
        """Wait while the connection is down or a failure is being recovered (a new
        connection is one: what the old one had in flight is lost)."""
        while True:
            # nats-py has nothing to await for "reconnected" but the callback that the
            # connection's owner (connect_bus) holds: a short poll, only while it is down.
            while not self._nc.is_connected and not self._nc.is_closed:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            reconnects = self._nc.stats["reconnects"]
            if reconnects != self._reconnects:
                self._reconnects = reconnects
                if self._pending:
                    self._fail("reconnected")
            if self._open.is_set():
                return
            await self._open.wait()

    def _fail(self, why: str) -> None:
        """Something pending failed: pause ``publish`` until it is resent and acked."""
        self._failures += 1
        self._replied.set()
        if self._open.is_set():
            log.warning("publishing paused to resend in order", why=why, unacked=len(self._pending))
            self._open.clear()
            self._failed.set()

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
            self.refused += 1
            self._fail("no stream answered")  # none yet, or a leader election
            return
        try:
            ack = _decode_ack(msg.data)
        except msgspec.DecodeError:
            self.errors += 1
            return
        if ack.error is not None:
            # Kept pending: a stream that is full, unavailable or mid-election recovers; it
            # is sent again until taken. Counted, and logged when it pauses publishing (not
            # at every resend of a pause), never dropped silently.
            self.errors += 1
            self.refused += 1
            if self._open.is_set():
                log.warning("publish rejected", subject=self._pending[seq][0], error=ack.error)
            self._fail("rejected")
            return
        del self._pending[seq]
        self.acked += 1
        self.duplicates += ack.duplicate
        if len(self._pending) < self._max_in_flight:
            self._room.set()
        if not self._pending:
            self._drained.set()
        self._replied.set()

    async def _watch(self) -> None:
        """Find what is not acked within ``ack_timeout`` (lost on the way, no answer at all)."""
        while True:
            await asyncio.sleep(self._ack_timeout / 4)
            if not self._open.is_set() or not self._nc.is_connected:
                continue  # being recovered, or waiting for a new connection
            deadline = time.monotonic() - self._ack_timeout
            if any(entry[3] < deadline for entry in self._pending.values()):
                self._fail("unacked within ack_timeout")

    async def _recover_loop(self) -> None:
        while True:
            await self._failed.wait()
            try:
                with broker_errors("resend"):
                    await self._recover()
            except BrokerError as exc:  # the connection dropped meanwhile
                log.warning("resend failed", error=str(exc))
                await asyncio.sleep(_RETRY_S)
                continue
            # No await since the last check: nothing failed in between.
            self._failed.clear()
            self._open.set()

    async def _recover(self) -> None:
        """Resend the unacked in order: the oldest alone until the stream takes it (it answers
        again), then the others, until every one is acked; nothing newer goes out meanwhile."""
        paused = time.monotonic()
        resent = self.resent
        while self._pending and not self._nc.is_closed:
            if not self._nc.is_connected:
                await asyncio.sleep(_RETRY_S)
                continue
            oldest = next(iter(self._pending))  # insertion order is publish order
            failures = self._failures
            await self._resend([oldest])
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_RETRY_S):
                    await self._settled(failures, oldest)
            if oldest in self._pending:
                if self._failures != failures:  # refused at once: ask again a little later
                    await asyncio.sleep(_RETRY_S)
                continue
            failures = self._failures
            await self._resend(list(self._pending))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._ack_timeout):
                    await self._settled(failures)
        log.info(
            "publishing resumed",
            resent=self.resent - resent,
            paused_s=round(time.monotonic() - paused, 3),
        )

    async def _settled(self, failures: int, seq: int | None = None) -> None:
        """Return once ``seq`` is acked (None: every pending message), or something failed
        since the count was ``failures``."""
        while self._failures == failures and (
            seq in self._pending if seq is not None else self._pending
        ):
            self._replied.clear()
            await self._replied.wait()
