"""The stream window on a real nats-server: a slow client is dropped with a clear reason, a
cursor older than the window is refused, and memory stays bounded by ``buffer``."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

import pytest

from fairprice.api.stream import STREAMS, CursorTooOldError, StreamWindow, parse_cursor
from fairprice.common.bus import Bus, ensure_streams
from fairprice.common.messages import FairPrice, encode
from fairprice.common.settings import StreamsSettings
from fairprice.common.subjects import Stream, price_msg_id
from fairprice.common.testing import eventually

BUFFER = 100


async def _publish(bus: Bus, symbol: str, first: int, count: int) -> None:
    for update_id in range(first, first + count):
        price = FairPrice(
            exchange="sim", symbol=symbol, update_id=update_id, event_time_ms=update_id,
            method="mid", price=1.0, mid=1.0, microprice=1.0, impact=None, spread=0.1,
            imbalance=0.0,
        )  # fmt: skip
        await bus.js.publish(
            Stream.PRICES.subject("sim", symbol),
            encode(price),
            headers={"Nats-Msg-Id": price_msg_id(f"sim:{symbol}:{update_id}")},
        )


@contextlib.asynccontextmanager
async def _window(bus: Bus) -> AsyncIterator[StreamWindow]:
    await ensure_streams(bus.jsm, StreamsSettings(), (Stream.PRICES, Stream.SIGNALS))
    window = StreamWindow(bus, buffer=BUFFER, resume_window_s=60)
    stop = asyncio.Event()
    task = asyncio.create_task(window.run(stop))
    try:
        await asyncio.wait_for(window.caught_up.wait(), 30)
        yield window
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_slow_client_is_dropped_with_a_reason_and_memory_stays_bounded(bus: Bus) -> None:
    async with _window(bus) as window:
        events = window.events(frozenset({"sim.SLOWUSDT"}), frozenset({Stream.PRICES}), None)
        await _publish(bus, "SLOWUSDT", 1, 5)
        await eventually(lambda: window.end >= 5, within=10, what="5 prices in the window")
        first = await anext(events)
        assert first.count(b"event: price") == 5
        # The client stops reading while three buffers' worth go by.
        await _publish(bus, "SLOWUSDT", 6, 3 * BUFFER)
        await eventually(lambda: window.end >= 3 * BUFFER, within=30, what="window moved on")
        assert window.size <= BUFFER + BUFFER // 10
        last = await anext(events)
        assert last.startswith(b"event: error")
        assert b'"error":"slow_client"' in last and b"reconnect" in last
        with pytest.raises(StopAsyncIteration):
            await anext(events)
        assert window.dropped == 1


async def test_cursor_older_than_the_window_is_refused_and_a_recent_one_resumes(
    bus: Bus,
) -> None:
    await ensure_streams(bus.jsm, StreamsSettings(), (Stream.PRICES, Stream.SIGNALS))
    await _publish(bus, "OLDUSDT", 1, 3 * BUFFER)
    async with _window(bus) as window:
        assert window.size <= BUFFER + BUFFER // 10  # filled from the stream, bounded
        with pytest.raises(CursorTooOldError):
            window.start_index(parse_cursor("5.0"))
        last = (await bus.jsm.stream_info("PRICES")).state.last_seq
        events = window.events(
            frozenset({"sim.OLDUSDT"}), frozenset({Stream.PRICES}), parse_cursor(f"{last - 3}.0")
        )
        chunk = await anext(events)
        assert chunk.count(b"event: price") == 3  # exactly the three after the cursor
        assert re.findall(rb"^id: (.*)$", chunk, re.M)[-1] == f"{last}.0".encode()
        await events.aclose()


async def test_resumed_ids_never_go_below_the_cursor(bus: Bus) -> None:
    """A client resuming here from another replica that had read further in SIGNALS: the ids
    it gets keep its SIGNALS position, so its next resume repeats nothing."""
    async with _window(bus) as window:
        await _publish(bus, "IDSUSDT", 1, 3)
        await eventually(lambda: window.end >= 3, within=10, what="3 prices in the window")
        last = (await bus.jsm.stream_info("PRICES")).state.last_seq
        cursor = parse_cursor(f"{last - 2}.999")
        events = window.events(frozenset({"sim.IDSUSDT"}), frozenset(STREAMS), cursor)
        chunk = await anext(events)
        assert re.findall(rb"^id: (.*)$", chunk, re.M) == [
            f"{last - 1}.999".encode(),
            f"{last}.999".encode(),
        ]
        await events.aclose()
