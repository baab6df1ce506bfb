"""JetStream helpers against the real nats-server."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
from dataclasses import replace
from typing import Any

import pytest
from nats.js import api

from fairprice.common.bus import Bus, connect_bus, ensure_streams
from fairprice.common.consumer import NO_RESPONDERS_RETRY_S, PullConsumer
from fairprice.common.errors import StoppedError
from fairprice.common.health import Readiness
from fairprice.common.publisher import Publisher
from fairprice.common.settings import NatsSettings, StreamLimits, StreamsSettings
from fairprice.common.subjects import (
    Stream,
    book_msg_id,
    books_partition,
    books_partition_filter,
    books_subject,
    parse_subject,
)
from fairprice.common.tail import StreamTail
from fairprice.common.testing import NatsServer, eventually, nats_settings_of


async def test_streams_created_twice_without_error(bus: Bus) -> None:
    settings = StreamsSettings()
    await ensure_streams(bus.jsm, settings)
    await ensure_streams(bus.jsm, settings)
    names = {info.config.name for info in await bus.jsm.streams_info()}
    assert names == {"BOOKS", "PRICES", "SIGNALS", "CANDLES", "ALERTS"}
    books = await bus.jsm.stream_info("BOOKS")
    assert books.config.subjects == ["books.>"]
    assert books.config.duplicate_window == 120


async def test_streams_updated_when_settings_change(bus: Bus) -> None:
    await ensure_streams(bus.jsm, StreamsSettings())
    changed = StreamsSettings(books=StreamLimits(max_age_s=600, max_bytes=1024**2))
    await ensure_streams(bus.jsm, changed)
    books = await bus.jsm.stream_info("BOOKS")
    assert books.config.max_age == 600
    assert books.config.max_bytes == 1024**2


async def test_only_a_streams_owner_updates_it_a_reader_leaves_it_as_it_is(
    nats_server: NatsServer,
) -> None:
    """The storer (a reader of BOOKS) with other limits leaves BOOKS alone, as its NATS user
    must (it may not update BOOKS); the crawler, its owner, updates it."""
    first = StreamsSettings(books=StreamLimits(max_age_s=600, max_bytes=2**20))
    other = StreamsSettings(books=StreamLimits(max_age_s=300, max_bytes=2**20))
    for user, settings, update, age in (
        ("crawler", first, True, 600),
        ("storer", other, False, 600),
        ("crawler", other, True, 300),
    ):
        async with connect_bus(nats_settings_of(nats_server, user), name=user) as bus:
            await ensure_streams(bus.jsm, settings, (Stream.BOOKS,), update=update)
            assert (await bus.jsm.stream_info(Stream.BOOKS.value)).config.max_age == age
    assert nats_server.refusals() == []


async def test_books_are_stored_under_their_partition_and_a_tail_follows_one(bus: Bus) -> None:
    """BOOKS' subject transform puts the server's partition of exchange + symbol in the stored
    subject; a tail filtered on a partition receives its books only, in stream order."""
    await ensure_streams(bus.jsm, StreamsSettings(partitions=4), (Stream.BOOKS,))
    symbols = [f"S{i:02d}" for i in range(24)]
    for symbol in symbols:
        await bus.js.publish(books_subject("sim", symbol), symbol.encode())
    stored = (await bus.jsm.stream_info("BOOKS", subjects_filter="books.>")).state.subjects or {}
    partition = {parse_subject(s)[2]: books_partition(s) for s in stored}
    assert sorted(partition) == symbols
    assert set(partition.values()) == {0, 1, 2, 3}  # 24 symbols spread over the 4
    async with StreamTail(bus, Stream.BOOKS, books_partition_filter(2), start_seq=1) as tail:
        got: list[bytes] = []
        while not tail.caught_up or not got:
            got += [m.data for m in await tail.next_batch(100, 5.0)]
    assert got == [s.encode() for s in symbols if partition[s] == 2]


async def test_same_msg_id_twice_stores_one_message(bus: Bus) -> None:
    await ensure_streams(bus.jsm, StreamsSettings())
    subject = books_subject("binance", "BTCUSDT")
    async with Publisher(bus.nc) as publisher:
        for _ in range(2):
            await publisher.publish(subject, b"{}", book_msg_id("binance", "BTCUSDT", 7))
        await publisher.publish(subject, b"{}", book_msg_id("binance", "BTCUSDT", 8))
    assert publisher.acked == 3
    assert publisher.duplicates == 1
    assert (await bus.jsm.stream_info("BOOKS")).state.messages == 2


async def test_publisher_applies_backpressure_and_acks_all(bus: Bus) -> None:
    await ensure_streams(bus.jsm, StreamsSettings())
    async with Publisher(bus.nc, max_in_flight=50) as publisher:
        for seq in range(2000):
            await publisher.publish(books_subject("sim", "A"), b"x", f"sim:A:{seq}")
            assert publisher.in_flight <= 50
    assert publisher.acked == 2000
    assert (await bus.jsm.stream_info("BOOKS")).state.messages == 2000


async def test_publisher_resends_what_a_restart_lost_in_order(
    nats_server: NatsServer, nats_settings: NatsSettings
) -> None:
    """Messages published across a broker restart are all stored once it is back, in the
    order they were published: what the dropped connection lost is resent before anything
    newer (a reader that needs a subject in order, like the converter, would skip it)."""
    count = 4000
    async with connect_bus(nats_settings, name="test") as bus:
        await ensure_streams(bus.jsm, StreamsSettings())
        async with Publisher(bus.nc, ack_timeout=1.0) as publisher:

            async def produce() -> None:
                for seq in range(count):
                    await publisher.publish(
                        books_subject("sim", "A"), str(seq).encode(), f"sim:A:{seq}"
                    )
                    if seq % 20 == 0:
                        await asyncio.sleep(0.002)  # steady load, not a burst

            producer = asyncio.create_task(produce())
            await eventually(lambda: publisher.acked >= 500, within=10, what="first acks")
            await eventually(lambda: publisher.in_flight > 5, within=10, what="in flight")
            nats_server.kill()  # SIGKILL with messages in flight: what it had not read is lost
            await nats_server.start()
            await producer
            async with asyncio.timeout(30):
                await publisher.flush()
        stored = await _stored_numbers(bus, "BOOKS")
    assert stored == list(range(count))


@pytest.mark.parametrize(
    "refusing",
    [
        # No stream takes order.> any more: every publish is answered 503 (no responders).
        {"subjects": ["elsewhere.>"]},
        # Full, and it keeps what it has: every publish gets a PubAck with an error.
        {"max_msgs": 400, "discard": api.DiscardPolicy.NEW},
    ],
    ids=["no stream answers", "stream full"],
)
async def test_publisher_keeps_order_when_the_stream_refuses_publishes_for_a_while(
    bus: Bus, refusing: dict[str, Any]
) -> None:
    """A stream that refuses every publish for a while (503, no responders: what a publisher
    sees while a NATS cluster elects a new leader for a stream whose leader died; or an error
    PubAck) loses nothing and reorders nothing: what it refused is stored before anything
    published after it. (Resent only when it timed out, it landed after newer messages, and
    the converter skipped those books.)"""
    config = api.StreamConfig(name="ORDER", subjects=["order.>"], duplicate_window=60)
    await bus.jsm.add_stream(config)
    count = 1500
    async with Publisher(bus.nc, ack_timeout=1.0) as publisher:

        async def produce() -> None:
            for seq in range(count):
                await publisher.publish("order.a", str(seq).encode(), f"a:{seq}")
                if seq % 10 == 0:
                    await asyncio.sleep(0.002)  # steady load, not a burst

        producer = asyncio.create_task(produce())
        await eventually(lambda: publisher.acked >= 300, within=10, what="first acks")
        await bus.jsm.update_stream(replace(config, **refusing))
        await eventually(lambda: publisher.refused > 0, within=10, what="a publish refused")
        await bus.jsm.update_stream(config)
        await producer
        async with asyncio.timeout(30):
            await publisher.flush()
    assert await _stored_numbers(bus, "ORDER") == list(range(count))


async def _stored_numbers(bus: Bus, stream: str) -> list[int]:
    """Every message of ``stream`` in stream order, each payload read as an integer."""
    info = await bus.jsm.stream_info(stream)
    stored = []
    for seq in range(1, info.state.last_seq + 1):
        msg = await bus.jsm.get_msg(stream, seq)
        assert msg.data is not None
        stored.append(int(msg.data))
    return stored


async def test_durable_consumer_resumes_after_reconnect(
    nats_server: NatsServer, nats_settings: NatsSettings
) -> None:
    async with connect_bus(nats_settings, name="test") as bus:
        await ensure_streams(bus.jsm, StreamsSettings())
        async with Publisher(bus.nc) as publisher:
            for seq in range(10):
                await publisher.publish(books_subject("sim", "A"), str(seq).encode(), f"id{seq}")
        # ack_wait 1 s: what was delivered but not acked before the restart comes back soon.
        async with PullConsumer(bus, Stream.BOOKS, "resume-test", batch=4, ack_wait=1) as consumer:
            first = await consumer.next_batch(4, max_wait=5)
            for msg in first:
                await msg.ack_sync()
    assert [m.data for m in first] == [b"0", b"1", b"2", b"3"]

    await nats_server.restart()
    async with connect_bus(nats_settings, name="test") as bus:
        async with PullConsumer(bus, Stream.BOOKS, "resume-test", ack_wait=1) as consumer:
            rest: set[bytes] = set()
            for _ in range(20):
                batch = await consumer.next_batch(10, max_wait=0.5)
                rest.update(m.data for m in batch)
                for msg in batch:
                    await msg.ack()
                if len(rest) == 6:
                    break
            assert consumer.pending == 0
    # Everything not acked before the restart, and nothing that was.
    assert rest == {str(seq).encode() for seq in range(4, 10)}


async def test_pull_consumer_shares_messages_between_replicas(bus: Bus) -> None:
    await ensure_streams(bus.jsm, StreamsSettings())
    async with Publisher(bus.nc) as publisher:
        for seq in range(1000):
            await publisher.publish(books_subject("sim", "A"), str(seq).encode(), f"id{seq}")
    seen: list[bytes] = []
    async with (
        PullConsumer(bus, Stream.BOOKS, "shared", batch=100) as one,
        PullConsumer(bus, Stream.BOOKS, "shared", batch=100) as two,
    ):

        async def drain(consumer: PullConsumer) -> int:
            taken = 0
            while len(seen) < 1000:
                batch = await consumer.next_batch(50, max_wait=0.5)
                seen.extend(m.data for m in batch)
                taken += len(batch)
                for msg in batch:
                    await msg.ack()
            return taken

        counts = await asyncio.gather(drain(one), drain(two))
    assert sorted(seen, key=int) == [str(seq).encode() for seq in range(1000)]
    assert all(count > 0 for count in counts)


async def test_pull_consumer_without_a_leader_asks_again_later_not_at_once(bus: Bus) -> None:
    """Nobody answers the consumer's pull requests (503: its durable has no leader; here it is
    deleted): it asks again every NO_RESPONDERS_RETRY_S, not in a busy loop, and gets messages
    once the durable is back."""
    await ensure_streams(bus.jsm, StreamsSettings())
    async with PullConsumer(bus, Stream.BOOKS, "leaderless") as consumer:
        await consumer.next_batch(1, max_wait=0.2)
        await bus.jsm.delete_consumer(Stream.BOOKS.value, "leaderless")
        before = bus.nc.stats["out_msgs"]
        assert await consumer.next_batch(1, max_wait=1.0) == []
        # The request that got the first 503, one per NO_RESPONDERS_RETRY_S, one at the end.
        assert bus.nc.stats["out_msgs"] - before <= 2 + 1.0 / NO_RESPONDERS_RETRY_S
        async with PullConsumer(bus, Stream.BOOKS, "leaderless"):  # the durable again
            async with Publisher(bus.nc) as publisher:
                await publisher.publish(books_subject("sim", "A"), b"back", "id-back")
            got: list[bytes] = []

            async def delivered() -> bool:
                got.extend(m.data for m in await consumer.next_batch(1, max_wait=0.2))
                return bool(got)

            await eventually(delivered, within=10, what="a message after the durable is back")
    assert got == [b"back"]


async def test_connect_bus_sets_readiness(nats_settings: NatsSettings) -> None:
    readiness = Readiness("nats")
    async with connect_bus(nats_settings, name="test", readiness=readiness):
        assert readiness.ready
    assert not readiness.ready


async def test_connect_gives_up_when_stopped_while_the_broker_is_unreachable() -> None:
    """nats-py retries a first connection forever by itself (``max_reconnect_attempts=-1``):
    ``stop`` must still end the wait, or a service could not stop during a broker outage."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        settings = NatsSettings(servers=[f"nats://127.0.0.1:{sock.getsockname()[1]}"])
        stop = asyncio.Event()

        async def connect() -> None:
            async with connect_bus(settings, name="test", stop=stop):
                pass

        task = asyncio.create_task(connect())
        done, _ = await asyncio.wait({task}, timeout=0.5)
        assert not done, "no broker: still trying"
        stop.set()
        with pytest.raises(StoppedError, match="stopped before NATS was reachable"):
            await asyncio.wait_for(task, timeout=10)


async def test_publisher_close_is_bounded_when_the_broker_is_gone(
    nats_server: NatsServer, nats_settings: NatsSettings
) -> None:
    """A shutdown with NATS down still ends (within close_timeout), reporting what is unacked."""
    async with connect_bus(nats_settings, name="test") as bus:
        await ensure_streams(bus.jsm, StreamsSettings())
        publisher = Publisher(bus.nc, close_timeout=0.5)
        async with publisher:
            nats_server.stop()
            for seq in range(10):
                await publisher.publish(books_subject("sim", "A"), b"x", f"sim:A:{seq}")
        assert publisher.in_flight == 10
        await nats_server.start()


async def test_a_tail_whose_consumer_heartbeats_but_delivers_nothing_is_replaced(
    bus: Bus,
) -> None:
    """A consumer that stays alive but stops delivering (here: paused by the server for an
    hour; after a NATS node died: left on a replica that no longer advances) still sends idle
    heartbeats; the tail sees that it holds undelivered messages and replaces it."""
    await ensure_streams(bus.jsm, StreamsSettings(), (Stream.BOOKS,))

    async def publish(n: int) -> None:
        for i in range(n):
            await bus.js.publish(books_subject("sim", "A"), str(i).encode())

    await publish(3)
    async with StreamTail(bus, Stream.BOOKS, "books.>", heartbeat_s=0.5) as tail:
        got = [m.data for m in await tail.next_batch(10, 5.0)]
        assert got == [b"0", b"1", b"2"]
        [consumer] = [c.name for c in await bus.jsm.consumers_info(Stream.BOOKS.value)]
        until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        reply = await bus.nc.request(
            f"$JS.API.CONSUMER.PAUSE.{Stream.BOOKS.value}.{consumer}",
            json.dumps({"pause_until": until.isoformat().replace("+00:00", "Z")}).encode(),
        )
        assert json.loads(reply.data)["paused"] is True
        await publish(2)
        later: list[bytes] = []
        while len(later) < 2:
            batch = await tail.next_batch(10, 10.0)
            assert batch, "nothing delivered after the pause"
            later += [m.data for m in batch]
    assert later == [b"0", b"1"]
