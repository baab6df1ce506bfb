"""``TailSet`` against the real nats-server: a tail per filter, refiltered without a gap."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nats.aio.subscription import Subscription

from fairprice.common.bus import Bus, connect_bus, ensure_streams
from fairprice.common.delivery import stream_seq
from fairprice.common.settings import NatsSettings, StreamsSettings
from fairprice.common.subjects import (
    Stream,
    books_partition,
    books_partition_filter,
    books_subject,
    parse_subject,
)
from fairprice.common.tail_set import TailSet
from fairprice.common.testing import NatsServer, eventually

SYMBOLS = [f"S{i:02d}" for i in range(24)]


async def test_refiltered_tails_lose_nothing_they_kept_or_covered(bus: Bus) -> None:
    """Kept filters go on; new ones start at the stream's end, or where the tails they replace
    had got to (``books.>`` for partitions and back), with what those held handed out."""
    await ensure_streams(bus.jsm, StreamsSettings(partitions=4), (Stream.BOOKS,))

    async def publish(round_: int) -> None:
        for symbol in SYMBOLS:
            await bus.js.publish(books_subject("sim", symbol), f"{symbol}:{round_}".encode())

    await publish(0)
    stored = (await bus.jsm.stream_info("BOOKS", subjects_filter="books.>")).state.subjects or {}
    partition = {parse_subject(s)[2]: books_partition(s) for s in stored}
    assert set(partition.values()) == {0, 1, 2, 3}

    def of(parts: set[int], *rounds: int) -> set[bytes]:
        return {f"{s}:{r}".encode() for r in rounds for s in SYMBOLS if partition[s] in parts}

    async def drain(tails: TailSet, last: set[bytes]) -> list[tuple[int, bytes]]:
        """(stream sequence, data) of what the set hands out until ``last`` all came, then a
        check that nothing more comes."""
        got: list[tuple[int, bytes]] = []
        while not last <= {data for _, data in got}:
            batch = await tails.next_batch(7, 5.0)
            assert batch, f"{last - {d for _, d in got}} never arrived"
            got += [(stream_seq(m), m.data) for m in batch]
        assert not await tails.next_batch(100, 0.3)
        return got

    def in_order_per_symbol(got: list[tuple[int, bytes]]) -> bool:
        last: dict[bytes, int] = {}
        for seq, data in got:
            symbol = data.split(b":")[0]
            if seq < last.get(symbol, 0):
                return False
            last[symbol] = seq
        return True

    p = books_partition_filter
    async with TailSet(bus, Stream.BOOKS) as tails:
        await tails.refilter([p(0)])  # from the stream's end: round 0 is not for it
        await publish(1)
        got = await drain(tails, of({0}, 1))
        assert sorted(d for _, d in got) == sorted(of({0}, 1))

        await tails.refilter([p(0), p(2)])  # 0 kept, 2 new from the stream's end
        await publish(2)
        got = await drain(tails, of({0, 2}, 2))
        assert sorted(d for _, d in got) == sorted(of({0, 2}, 2))
        assert in_order_per_symbol(got)

        await tails.refilter([Stream.BOOKS.wildcard])  # covers 0 and 2, from where they were
        await publish(3)
        got = await drain(tails, of({0, 1, 2, 3}, 3))
        data = [d for _, d in got]
        assert sorted(d for d in data if d.endswith(b":3")) == sorted(of({0, 1, 2, 3}, 3))
        # Before them only round 2, after where the tail further behind was (the other may
        # hand some out again: a reader keeping stream sequences skips those).
        assert set(data) - of({0, 1, 2, 3}, 3) <= of({0, 1, 2, 3}, 2)
        assert in_order_per_symbol(got)

        await publish(4)  # received by books.>, not handed out yet: handed back, then out
        await eventually(lambda: tails.held == len(SYMBOLS), what="round 4 held")
        await tails.refilter([p(1), p(3)])
        await publish(5)
        got = await drain(tails, of({1, 3}, 4, 5))
        data = [d for _, d in got]
        followed = [d for d in data if partition[d.split(b":")[0].decode()] in (1, 3)]
        assert sorted(followed) == sorted(of({1, 3}, 4, 5))  # each once
        assert set(data) - set(followed) <= of({0, 2}, 4)  # what books.> held of the others
        assert in_order_per_symbol(got)


async def test_tails_close_at_once_when_the_broker_is_gone(
    nats_server: NatsServer, nats_settings: NatsSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each consumer's deletion waits out its request timeout (5 s) when NATS is gone: eight
    tails closed one after another would keep a stopping converter 40 s, past its grace. So
    the eight deletions are under way at once."""
    async with connect_bus(nats_settings, name="test") as bus:
        await ensure_streams(bus.jsm, StreamsSettings(), (Stream.BOOKS,))
        tails = TailSet(bus, Stream.BOOKS)
        await tails.refilter([books_partition_filter(p) for p in range(8)])
        delete = bus.jsm.delete_consumer
        in_flight, most = 0, 0

        async def counted(*args: Any, **kwargs: Any) -> bool:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            try:
                return await delete(*args, **kwargs)  # the real request, to a broker gone
            finally:
                in_flight -= 1

        monkeypatch.setattr(bus.jsm, "delete_consumer", counted)
        nats_server.stop()
        await eventually(lambda: not bus.nc.is_connected, what="the client noticed")
        await tails.__aexit__(None, None, None)
        assert most == 8
        await nats_server.start()
    # nats-py leaves the task of its request inbox (``<inbox prefix>.<id>.*``) running when
    # the connection closes after requests timed out in an outage: stop it, so that the leak
    # check sees what is ours (the tails' subscriptions have inboxes without the ``.*``).
    for task in asyncio.all_tasks():
        frame = getattr(task.get_coro(), "cr_frame", None)
        sub = frame.f_locals.get("self") if frame is not None else None
        if isinstance(sub, Subscription) and sub.subject.endswith(".*"):
            task.cancel()
