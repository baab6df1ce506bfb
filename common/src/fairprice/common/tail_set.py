"""Several filters of one stream read as one tail, a consumer each: ``TailSet``.

nats-server serves a consumer of several filter subjects that is behind at ~4x the CPU a
message of consumers of one filter each (``bench/filters.py``: three converter replicas' tails
of their partitions, 81-93 against 19-23 us flat out), and a converter replica is behind
exactly when its machine is busiest. So a replica follows each of its partitions with a
``StreamTail`` of its own and reads them as one: ``next_batch`` takes what the tails hold, in
turn, and waits on one event that every tail sets.

``refilter`` keeps the tails of the filters kept (their consumers are not touched). A tail it
stops hands back what it held, and the new tails start where the stopped ones had got to, so a
filter that a stopped one covered (``books.>`` giving way to the partitions, or the reverse)
loses nothing; the new tails of a set that stopped none start at the stream's end, as a
``StreamTail`` does when it followed nothing. Within one filter the order is the stream's;
between filters there is none (a converter's partitions hold different symbols). When
several stopped tails give way to one that covers them all, it starts where the one furthest
behind had got to, so it may hand out again what the others had (a reader that keeps stream
sequences, as the converter does, skips those).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from types import TracebackType

from nats.aio.msg import Msg

from fairprice.common.broker_errors import broker_errors
from fairprice.common.bus import Bus
from fairprice.common.subjects import Stream
from fairprice.common.tail import StreamTail

__all__ = ["TailSet"]


class TailSet:
    """``async with TailSet(bus, Stream.BOOKS) as tails: await tails.refilter([...])``;
    ``max_buffer`` is shared out between the tails."""

    def __init__(self, bus: Bus, stream: Stream, *, max_buffer: int = 20_000) -> None:
        self._bus = bus
        self._stream = stream
        self._max_buffer = max_buffer
        self._tails: dict[str, StreamTail] = {}
        self._held: list[Msg] = []  # handed back by stopped tails, handed out first
        self._resume: int | None = None  # where stopped tails had got to, until replaced
        self._arrived = asyncio.Event()
        self._turn = 0
        self._changing = asyncio.Lock()

    async def __aenter__(self) -> TailSet:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tails, self._tails = self._tails, {}
        await self._close(list(tails.values()))
        self._held.clear()

    @property
    def held(self) -> int:
        """Messages received and not handed out yet."""
        return len(self._held) + sum(tail.held for tail in self._tails.values())

    @property
    def pending(self) -> int:
        """Messages the tails' consumers had not delivered yet (see ``StreamTail.pending``)."""
        return sum(tail.pending for tail in self._tails.values())

    async def refilter(self, filters: Iterable[str]) -> None:
        """Follow ``filters`` from here on, a tail each. ``BrokerError`` when a consumer could
        not be created: call it again (nothing is lost meanwhile; the tails already made stay)."""
        wanted = set(filters)
        async with self._changing:
            stopped = [self._tails.pop(name) for name in sorted(set(self._tails) - wanted)]
            for tail, held in zip(stopped, await self._close(stopped), strict=True):
                self._held.extend(held)
                self._resume = min(self._resume or tail.next_seq, tail.next_seq)
            added = sorted(wanted - set(self._tails))
            if not added:
                return
            start = self._resume or await self._stream_end()
            per_tail = max(self._max_buffer // len(wanted), 100)
            for name in added:
                tail = StreamTail(
                    self._bus,
                    self._stream,
                    name,
                    start_seq=start,
                    max_buffer=per_tail,
                    arrived=self._arrived,
                )
                self._tails[name] = await tail.__aenter__()
            self._resume = None

    async def next_batch(self, max_msgs: int, max_wait: float) -> list[Msg]:
        """Up to ``max_msgs`` messages: at once when some are here, else the first to arrive
        within ``max_wait`` seconds (possibly none)."""
        if self._held:
            held = self._held[:max_msgs]
            del self._held[:max_msgs]
            await asyncio.sleep(0)  # a reader catching up lets the other tasks run
            return held
        tails = list(self._tails.values())
        if not any(tail.held for tail in tails):
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), max_wait)
        self._turn = (self._turn + 1) % max(len(tails), 1)
        batch: list[Msg] = []
        for tail in tails[self._turn :] + tails[: self._turn]:  # no filter always served first
            if len(batch) >= max_msgs:
                break
            if tail.held:
                batch += await tail.next_batch(max_msgs - len(batch), 0)
        return batch

    @staticmethod
    async def _close(tails: list[StreamTail]) -> list[list[Msg]]:
        """Close ``tails`` at once: with the broker gone each deletion of a consumer waits out
        its request's timeout, and a service must stop within its grace period."""
        return list(await asyncio.gather(*(tail.close() for tail in tails)))

    async def _stream_end(self) -> int:
        with broker_errors("tail set start"):
            info = await self._bus.jsm.stream_info(self._stream.value)
        return info.state.last_seq + 1
