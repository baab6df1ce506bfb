"""Reading a stream in order, from a chosen point, without acknowledgements: ``StreamTail``.

For a reader that keeps no position in a durable consumer (the converter: where it resumes is a
fact of its output, the last price of each symbol in PRICES): ephemeral, ordered, push
consumers: no acks (half the messages on the wire), flow control so a slow reader bounds what is
in flight, idle heartbeats so a consumer lost in a broker restart is noticed. The tail tracks
the stream sequence it has reached; when the consumer sequence skips (a message lost on the way)
or the heartbeats stop, it deletes the consumer and creates a new one from the next stream
sequence, so what it hands out is every message of the filter, in stream order, exactly once.

nats-py has an ordered consumer; it is not used here because it restarts from stream sequence 1
when it is reset before its first message (a whole-stream replay), and it drops messages as a
"slow consumer" with nothing but an error callback. This one is the same idea in a hundred
lines, with those two holes closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import time
from collections.abc import Iterable
from types import TracebackType

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api

from fairprice.common.broker_errors import broker_errors
from fairprice.common.bus import Bus
from fairprice.common.delivery import delivery
from fairprice.common.errors import BrokerError, NotFoundError
from fairprice.common.logs import get_logger
from fairprice.common.subjects import Stream

__all__ = ["StreamTail"]

log = get_logger(__name__)

_HEARTBEAT_S = 2.0


class StreamTail:
    """``async with StreamTail(bus, Stream.BOOKS, "books.>", start_seq=n) as t:
    await t.next_batch(...)``.

    ``filters``: one subject filter or several (one consumer; nats-server serves several at
    ~4x the CPU a message when behind: a tail each, ``TailSet``, is cheaper).

    Start at ``start_seq``, at ``start_time``, or (neither) at the stream's first message.
    ``pending`` is how many messages of the filter the server had not delivered yet, as of the
    last one delivered (or of the consumer's creation).
    """

    def __init__(
        self,
        bus: Bus,
        stream: Stream,
        filters: str | Iterable[str],
        *,
        start_seq: int | None = None,
        start_time: dt.datetime | None = None,
        heartbeat_s: float = _HEARTBEAT_S,
        max_buffer: int = 20_000,
        arrived: asyncio.Event | None = None,
    ) -> None:
        self._bus = bus
        self._stream = stream
        self._filters = (filters,) if isinstance(filters, str) else tuple(sorted(filters))
        self._start_time = start_time
        self._heartbeat_s = heartbeat_s
        self.next_seq = start_seq or 0
        """The stream sequence to resume from (0: not positioned yet)."""
        self.pending = 0
        self._expected = 1  # next consumer sequence
        self._buffer: list[Msg] = []
        self._arrived = arrived or asyncio.Event()  # several tails may share one (TailSet)
        self._sub: Subscription | None = None
        self._consumer: str | None = None
        self._last_activity = time.monotonic()
        self._last_data = self._last_activity  # the last message (not heartbeat) delivered
        self._watchdog: asyncio.Task[None] | None = None
        self._replacing = asyncio.Lock()  # one consumer replacement at a time
        self._reset_task: asyncio.Task[None] | None = None
        self._generation = 0
        self._held_fc: str | None = None  # a flow-control reply held back while we are behind
        self._max_buffer = max_buffer

    async def __aenter__(self) -> StreamTail:
        await self._create()
        self._watchdog = asyncio.create_task(self._watch(), name=f"tail-{self._stream}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> list[Msg]:
        """Delete the consumer; the messages held and not handed out yet, which end just
        before ``next_seq``."""
        for task in (self._watchdog, self._reset_task):
            # Cancel until done: Python 3.11's wait_for (in nats-py's requests) can swallow
            # a cancellation that races with a reply.
            while task is not None and not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.1)
        self._generation += 1  # what is still on its way is not held: next_seq stays put
        await self._drop()
        held, self._buffer = self._buffer, []
        return held

    @property
    def caught_up(self) -> bool:
        """Everything the filter held when last heard from has been handed out."""
        return not self._buffer and self.pending == 0

    @property
    def held(self) -> int:
        """Messages received and not handed out yet."""
        return len(self._buffer)

    async def next_batch(self, max_msgs: int, max_wait: float) -> list[Msg]:
        """Up to ``max_msgs`` messages: at once when some are here, else the first to arrive
        within ``max_wait`` seconds (possibly none)."""
        if self._buffer:
            # Yield even when messages are here: a reader that is catching up must not starve
            # the other tasks (membership heartbeats above all) of the event loop.
            await asyncio.sleep(0)
        else:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), max_wait)
        batch = self._buffer[:max_msgs]
        del self._buffer[:max_msgs]
        if self._held_fc is not None and len(self._buffer) < self._max_buffer // 2:
            reply, self._held_fc = self._held_fc, None
            await self._bus.nc.publish(reply, b"")
        return batch

    async def _create(self) -> None:
        nc = self._bus.nc
        inbox = nc.new_inbox()
        several = len(self._filters) > 1
        config = api.ConsumerConfig(
            deliver_subject=inbox,
            # Several filters need nats-server >= 2.10; one keeps working with older servers.
            filter_subject=None if several else self._filters[0],
            filter_subjects=list(self._filters) if several else None,
            ack_policy=api.AckPolicy.NONE,
            flow_control=True,
            idle_heartbeat=self._heartbeat_s,
            mem_storage=True,
            max_deliver=1,
            inactive_threshold=max(30.0, self._heartbeat_s * 10),
        )
        if self.next_seq:
            config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = self.next_seq
        elif self._start_time is not None:
            config.deliver_policy = api.DeliverPolicy.BY_START_TIME
            config.opt_start_time = self._start_time
        self._expected = 1
        self._generation += 1
        self._held_fc = None
        self._sub = await nc.subscribe(
            inbox,
            cb=functools.partial(self._on_msg, self._generation),
            pending_msgs_limit=0,
            pending_bytes_limit=0,
        )
        try:
            info = await self._bus.jsm.add_consumer(self._stream.value, config)
        except BaseException:
            await self._sub.unsubscribe()
            self._sub = None
            raise
        self._consumer = info.name
        if self._expected == 1:  # else messages came before the reply and know better
            self.pending = info.num_pending or 0
        self._last_activity = self._last_data = time.monotonic()

    async def _drop(self) -> None:
        sub, consumer = self._sub, self._consumer
        self._sub = self._consumer = None
        if self._bus.nc.is_closed:
            return
        if sub is not None:
            with contextlib.suppress(BrokerError), broker_errors("unsubscribe"):
                await sub.unsubscribe()
        if consumer is not None:
            # Gone with the subscription anyway (inactive threshold); deleting frees it now.
            with contextlib.suppress(BrokerError), broker_errors("delete consumer"):
                await self._bus.jsm.delete_consumer(self._stream.value, consumer)

    async def _reset(self, why: str) -> None:
        async with self._replacing:
            log.info("tail consumer reset", stream=self._stream, next_seq=self.next_seq, why=why)
            await self._drop()
            await self._create()

    async def _watch(self) -> None:
        """Replace the consumer when it went silent (no heartbeat: its server is gone), or when
        it heartbeats but delivers nothing although it holds messages for us (seen after a NATS
        cluster node died: a consumer left behind on a replica that no longer advances)."""
        while True:
            await asyncio.sleep(self._heartbeat_s)
            if not self._bus.nc.is_connected:
                continue
            now = time.monotonic()
            silent = now - self._last_activity > 3 * self._heartbeat_s
            idle = now - self._last_data > 3 * self._heartbeat_s
            try:
                with broker_errors("tail consumer reset"):
                    if self._sub is None or silent:
                        await self._reset("no heartbeat")
                    elif idle and self._held_fc is None and await self._undelivered():
                        await self._reset("heartbeats but no messages")
            except BrokerError as exc:
                log.warning("tail consumer reset failed", stream=self._stream, error=str(exc))

    async def _undelivered(self) -> bool:
        """Whether the (idle) consumer says it has messages it has not delivered."""
        consumer = self._consumer
        if consumer is None:
            return False
        self._last_data = time.monotonic()  # asked once per idle stretch, not every beat
        try:
            with broker_errors("consumer info"):
                info = await self._bus.jsm.consumer_info(self._stream.value, consumer)
        except NotFoundError:
            return True  # gone with its server
        return (info.num_pending or 0) > 0

    async def _on_msg(self, generation: int, msg: Msg) -> None:
        if generation != self._generation:
            return  # a late message of a consumer already replaced
        self._last_activity = time.monotonic()
        if not msg.data and msg.headers and "Status" in msg.headers:
            # 100: an idle heartbeat or a flow-control request. Answer the request (its reply
            # subject) once we have caught up, and the stall a heartbeat reports, or the
            # server stops delivering: that is the backpressure.
            reply = msg.reply or msg.headers.get("Nats-Consumer-Stalled")
            if reply and len(self._buffer) >= self._max_buffer:
                self._held_fc = reply
            elif reply:
                await self._bus.nc.publish(reply, b"")
            return
        meta = delivery(msg)
        consumer_seq = meta.consumer_seq
        if consumer_seq != self._expected:
            # A message lost between the server and us: start again after the last one kept.
            self._generation += 1  # ignore what the old consumer still sends
            self._reset_task = asyncio.create_task(self._reset("sequence gap"))
            return
        self._expected = consumer_seq + 1
        self.next_seq = meta.stream_seq + 1
        self.pending = meta.pending
        self._last_data = self._last_activity
        self._buffer.append(msg)
        self._arrived.set()
