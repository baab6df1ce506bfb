"""The live stream's shared window: every PRICES and SIGNALS message of the last while, once.

One replica keeps one ``StreamTail`` per stream (the whole stream, in stream order, gap-free
across broker restarts: the tail re-creates its consumer from the next stream sequence) and
appends each message, already encoded as a Server-Sent Event, to one list shared by every
client. A client is an index into that list and the set of symbols it asked for; serving it is
walking the list, so a thousand clients cost one NATS delivery per message, not a thousand.

The event id is the window's position after the message, ``<PRICES seq>.<SIGNALS seq>``:
everything of both streams up to there has been offered to the client. Stream sequences are
the stream's own (the same on every replica, kept across broker restarts), so a client that
reconnects with ``Last-Event-ID`` to any replica resumes exactly after the last event it saw.
(An exchange event time would not do: the times of different symbols interleave, so one time
cannot say what a client of several symbols has seen.)

Memory is bounded by ``buffer`` messages, whatever the clients do. The window is filled at
start-up from ``resume_window_s`` ago, so a client reconnecting to a fresh replica resumes
too. A client whose index falls off the window's start is too slow: it is dropped with an
``error`` event saying so; a cursor older than the window is refused (410) at connection.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass

import msgspec
from sse_starlette import ServerSentEvent

from fairprice.common.bus import Bus
from fairprice.common.delivery import delivery
from fairprice.common.errors import TransientError
from fairprice.common.logs import get_logger
from fairprice.common.subjects import Stream
from fairprice.common.tail import StreamTail

__all__ = [
    "STREAMS",
    "Cursor",
    "CursorTooOldError",
    "Entry",
    "StreamWindow",
    "WindowNotReadyError",
    "parse_cursor",
]

log = get_logger(__name__)

STREAMS = (Stream.PRICES, Stream.SIGNALS)
_EVENT = {Stream.PRICES: "price", Stream.SIGNALS: "signal"}
_OTHER = {Stream.PRICES: Stream.SIGNALS, Stream.SIGNALS: Stream.PRICES}
_BATCH = 500
_PER_YIELD = 1000
"""Entries a client walks before its chunk goes out: one socket write per batch, not per event."""

Cursor = dict[Stream, int]
"""The last stream sequence a client has seen, per stream."""


class CursorTooOldError(Exception):
    """The window no longer holds every message after the cursor."""


class WindowNotReadyError(TransientError):
    """The window is still filling at start-up: where a cursor stands is not known yet."""


def parse_cursor(text: str) -> Cursor:
    """``"<prices seq>.<signals seq>"`` -> a cursor; ``ValueError`` when it is not one."""
    prices, _, signals = text.partition(".")
    cursor = {Stream.PRICES: int(prices), Stream.SIGNALS: int(signals)}
    if min(cursor.values()) < 0:
        raise ValueError("negative sequence")
    return cursor


@dataclass(frozen=True, slots=True)
class Entry:
    stream: Stream
    seq: int
    key: str
    """``<exchange>.<SYMBOL>``."""
    other: int
    """The window's position in the other stream when this entry was added (its ``id``)."""
    chunk: bytes
    """The whole SSE event: ``id`` (first line), ``event`` and the message's JSON as ``data``."""

    def chunk_after(self, seen: Cursor) -> bytes:
        """The event for a client that resumed at ``seen``: its id never goes below the
        cursor (this replica's other stream may lag behind where the client had been)."""
        other = _OTHER[self.stream]
        if self.other >= seen[other]:
            return self.chunk
        position = {self.stream: self.seq, other: seen[other]}
        first_line = self.chunk.index(b"\n")
        return _id(position) + self.chunk[first_line:]


class StreamWindow:
    """``window.run(stop)`` keeps the window; ``window.events(...)`` serves one client."""

    def __init__(self, bus: Bus, *, buffer: int, resume_window_s: float) -> None:
        self._bus = bus
        self._buffer = buffer
        self._resume_window_s = resume_window_s
        self._entries: list[Entry] = []
        self._offset = 0  # the global index of _entries[0]
        self._position: Cursor = dict.fromkeys(STREAMS, 0)
        self._floor: Cursor = dict.fromkeys(STREAMS, 0)
        """Per stream, the last sequence *not* in the window (everything above it is)."""
        self._started: set[Stream] = set()  # streams whose first message arrived
        self._grown = asyncio.Event()
        self._closed = False
        self.caught_up = asyncio.Event()
        """Set once both streams were read up to what they held when the window started."""
        self.dropped = 0

    @property
    def end(self) -> int:
        return self._offset + len(self._entries)

    @property
    def size(self) -> int:
        return len(self._entries)

    async def run(self, stop: asyncio.Event) -> None:
        """Tail both streams into the window until ``stop`` is set."""
        start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self._resume_window_s)
        caught_up: set[Stream] = set()
        try:
            async with asyncio.TaskGroup() as tg:
                for stream in STREAMS:
                    tg.create_task(
                        self._tail(stream, start, stop, caught_up), name=f"tail-{stream}"
                    )
        finally:
            self._closed = True
            self._wake()

    async def _tail(
        self, stream: Stream, start: dt.datetime, stop: asyncio.Event, caught_up: set[Stream]
    ) -> None:
        # Every message after the stream's last sequence now is stored after ``start``, so
        # the tail delivers it: the window holds everything after that sequence, or after the
        # one before the first message the tail delivers (``_append``), whichever is lower.
        info = await self._bus.jsm.stream_info(stream.value)
        self._floor[stream] = self._position[stream] = info.state.last_seq
        async with StreamTail(self._bus, stream, stream.wildcard, start_time=start) as tail:
            while not stop.is_set():
                if tail.caught_up and stream not in caught_up:
                    caught_up.add(stream)
                    if len(caught_up) == len(STREAMS):
                        self.caught_up.set()
                msgs = await tail.next_batch(_BATCH, 0.5)
                if msgs:
                    self._append(
                        stream, [(delivery(msg).stream_seq, msg.subject, msg.data) for msg in msgs]
                    )

    def _append(self, stream: Stream, messages: list[tuple[int, str, bytes]]) -> None:
        event = _EVENT[stream]
        for seq, subject, data in messages:
            if stream not in self._started:
                self._started.add(stream)
                self._floor[stream] = min(self._floor[stream], seq - 1)
            elif seq <= self._position[stream]:
                continue  # already here (a tail that re-created its consumer)
            self._position[stream] = seq
            key = subject.split(".", 1)[1]
            chunk = (
                _id(self._position)
                + ServerSentEvent(data=data.decode(), event=event, sep="\n").encode()
            )
            other = self._position[_OTHER[stream]]
            self._entries.append(Entry(stream, seq, key, other, chunk))
        excess = len(self._entries) - self._buffer
        if excess > self._buffer // 10:  # prune in steps: one list copy per tenth of the buffer
            for entry in self._entries[:excess]:
                self._floor[entry.stream] = max(self._floor[entry.stream], entry.seq)
            del self._entries[:excess]
            self._offset += excess
        self._wake()

    def _wake(self) -> None:
        self._grown.set()
        self._grown = asyncio.Event()

    def start_index(self, cursor: Cursor | None) -> int:
        """Where a client starts: the end (live only), or the first entry after ``cursor``."""
        if cursor is None:
            return self.end
        if not self.caught_up.is_set():
            raise WindowNotReadyError("the stream window is still filling")
        for stream in STREAMS:
            if cursor[stream] < self._floor[stream]:
                raise CursorTooOldError(
                    f"{stream.value} sequence {cursor[stream]} is older than this replica's "
                    f"window (which starts after {self._floor[stream]})"
                )
        for index, entry in enumerate(self._entries):
            if entry.seq > cursor[entry.stream]:
                return self._offset + index
        return self.end

    def events(
        self,
        keys: frozenset[str],
        kinds: frozenset[Stream],
        cursor: Cursor | None,
    ) -> AsyncIterator[bytes]:
        """One client's events from ``start_index(cursor)`` (taken now) on, several per chunk.

        Ends with an ``error`` event when the client fell off the window (too slow) and with
        a ``close`` event when the replica shuts down. ``CursorTooOldError`` at once when the
        window does not hold everything after ``cursor``.
        """
        index = self.start_index(cursor)
        seen = dict(cursor) if cursor is not None else dict.fromkeys(STREAMS, 0)
        return self._events(index, seen, keys, kinds)

    async def _events(
        self, index: int, seen: Cursor, keys: frozenset[str], kinds: frozenset[Stream]
    ) -> AsyncIterator[bytes]:
        while True:
            if index < self._offset:
                self.dropped += 1
                yield _control(
                    "error",
                    {
                        "error": "slow_client",
                        "message": f"dropped: more than {self._buffer} messages behind the "
                        "stream; reconnect (with Last-Event-ID) to resume",
                    },
                )
                return
            grown = self._grown
            end = min(self.end, index + _PER_YIELD)
            chunks: list[bytes] = []
            entries, offset = self._entries, self._offset
            for i in range(index - offset, end - offset):
                entry = entries[i]
                if entry.key in keys and entry.stream in kinds and entry.seq > seen[entry.stream]:
                    chunks.append(entry.chunk_after(seen))
            index = end
            if chunks:
                yield b"".join(chunks)
            elif index >= self.end:
                if self._closed:
                    yield _control("close", {"reason": "server shutting down; reconnect"})
                    return
                await grown.wait()


def _id(position: Cursor) -> bytes:
    """The ``id`` line of an event at ``position``: ``<PRICES seq>.<SIGNALS seq>``."""
    return f"id: {position[Stream.PRICES]}.{position[Stream.SIGNALS]}\n".encode()


def _control(event: str, body: dict[str, str]) -> bytes:
    return ServerSentEvent(data=msgspec.json.encode(body).decode(), event=event, sep="\n").encode()
