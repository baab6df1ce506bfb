"""Exactly-once storage through faults: InfluxDB outages, replicas, poison messages."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import httpx

from fairprice.common.messages import encode
from fairprice.common.publisher import Publisher
from fairprice.common.settings import HttpSettings
from fairprice.common.subjects import (
    DEADLETTER_STREAM,
    Stream,
    book_msg_id,
    books_subject,
    deadletter_subject,
    parse_subject,
)
from fairprice.common.testing import NatsServer
from fairprice.storer.deadletter import REASON_HEADER, SUBJECT_HEADER
from fairprice.storer.settings import BooksSettings

if TYPE_CHECKING:
    from conftest import Harness


async def _consumer_done(h: Harness, durable: str) -> bool:
    info = await h.bus.jsm.consumer_info(Stream.BOOKS.value, durable)
    return info.num_pending == 0 and info.num_ack_pending == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_influxd_outage_loses_nothing_and_doubles_nothing(h: Harness) -> None:
    port = free_port()
    settings = h.settings.model_copy(
        update={
            "storer": h.settings.storer.model_copy(
                update={"http": HttpSettings(host="127.0.0.1", port=port)}
            )
        }
    )
    books = [h.book(i, symbol=f"S{i % 3}") for i in range(3000)]
    async with (
        h.storer(settings) as storer,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        await h.publish(books[:1000])
        await h.wait_count("orderbook", "update_id", 1000)
        h.influxd.stop()

        async def not_ready() -> bool:
            return (await http.get("/readyz")).status_code == 503

        await h.publish(books[1000:2000])
        await h.wait_for(not_ready, what="not ready")

        async def retried_past_timeout() -> bool:
            # Longer down than a batch's delay and than the write timeout, several retries.
            return storer.metric("fairprice_storer_write_retries_total") >= 5

        await h.wait_for(retried_past_timeout, what="retries")
        assert (await http.get("/healthz")).status_code == 200
        await h.publish(books[2000:])

        async def held_back() -> bool:
            # What this replica holds unacked stays within max_ack_pending (1000); the rest
            # waits in the stream.
            info = await h.bus.jsm.consumer_info(Stream.BOOKS.value, "storer-books")
            assert info.num_ack_pending <= settings.storer.max_ack_pending
            return info.num_pending > 0 and info.num_ack_pending > 0

        await h.wait_for(held_back, what="messages held back in the stream")
        await h.influxd.start()
        await h.wait_count("orderbook", "update_id", 3000)

        async def ready() -> bool:
            return (await http.get("/readyz")).status_code == 200

        await h.wait_for(ready, what="ready again")
        await h.wait_for(lambda: _consumer_done(h, "storer-books"), what="all acked")
    assert await h.count("orderbook", "update_id") == 3000
    stored = {row["update_id"] for row in await h.rows_all("SELECT update_id FROM orderbook")}
    assert stored == {b.update_id for b in books}
    assert storer.metric("fairprice_storer_write_errors_total", kind="connection") > 0
    assert (
        storer.metric("fairprice_storer_messages_total", stream="books", outcome="stored") >= 3000
    )


async def test_two_replicas_share_the_load(h: Harness) -> None:
    books = [h.book(i, symbol=f"S{i % 5}") for i in range(4000)]
    async with h.storer(h.settings) as one, h.storer(h.settings) as two:
        await h.publish(books)
        await h.wait_count("orderbook", "update_id", 4000)
        await h.wait_for(lambda: _consumer_done(h, "storer-books"), what="all acked")
    stored = {row["update_id"] for row in await h.rows_all("SELECT update_id FROM orderbook")}
    assert stored == {b.update_id for b in books}
    assert await h.count("orderbook", "update_id") == 4000
    written = [
        r.metric("fairprice_storer_points_written_total", measurement="orderbook")
        for r in (one, two)
    ]
    assert all(count > 0 for count in written), written
    assert sum(written) >= 4000


async def test_poison_messages_go_to_dead_letters_and_the_rest_is_stored(h: Harness) -> None:
    books = [h.book(i) for i in range(500)]
    not_a_number = h.book(
        500, bids=[("2", "1"), ("1.2.3", "1")], asks=[("3", "1")]
    )  # influxd refuses
    injected = h.book(501, bids=[("1,evil=2", "1")], asks=[("2", "1")])  # storer refuses
    subject = books_subject("sim", "AAA")
    async with h.storer(h.settings) as storer:
        async with Publisher(h.bus.nc) as publisher:
            for book in books[:200]:
                await publisher.publish(
                    subject, encode(book), book_msg_id("sim", "AAA", book.update_id)
                )
            await publisher.publish(subject, b'{"not": "a book"}', "sim:AAA:garbage")
            for bad in (not_a_number, injected):
                await publisher.publish(
                    subject, encode(bad), book_msg_id("sim", "AAA", bad.update_id)
                )
            for book in books[200:]:
                await publisher.publish(
                    subject, encode(book), book_msg_id("sim", "AAA", book.update_id)
                )
        await h.wait_count("orderbook", "update_id", 500)
        await h.wait_for(lambda: _consumer_done(h, "storer-books"), what="all acked")
        assert (
            storer.metric("fairprice_storer_dead_letters_total", stream="books", reason="rejected")
            == 1
        )
        assert (
            storer.metric("fairprice_storer_dead_letters_total", stream="books", reason="invalid")
            == 2
        )
    assert await h.count("orderbook", "update_id") == 500
    info = await h.bus.jsm.stream_info(DEADLETTER_STREAM)
    assert info.state.messages == 3
    letters = [await h.bus.jsm.get_msg(DEADLETTER_STREAM, seq) for seq in (1, 2, 3)]
    assert {m.subject for m in letters} == {deadletter_subject("storer", Stream.BOOKS)}
    by_payload = {m.data: m.headers for m in letters}
    assert "invalid Book message" in by_payload[b'{"not": "a book"}'][REASON_HEADER]
    assert "not a number" in by_payload[encode(injected)][REASON_HEADER]
    assert "unable to parse" in by_payload[encode(not_a_number)][REASON_HEADER]
    # The subject as stored (BOOKS adds the partition token: books.<p>.sim.AAA).
    books_info = await h.bus.jsm.stream_info(Stream.BOOKS.value, subjects_filter="books.>")
    [stored] = books_info.state.subjects or {}
    assert parse_subject(stored) == parse_subject(subject)
    assert all(headers[SUBJECT_HEADER] == stored for headers in by_payload.values())


async def test_books_thinned_to_one_per_interval(h: Harness) -> None:
    """Ten books per second for three seconds: three points, each the second's first book,
    stamped at the second's start; every book acked. A book left out is decoded no further
    than its head (``BookHead``): one whose levels would not even decode is thinned, not
    dead-lettered."""
    settings = h.settings.model_copy(
        update={
            "storer": h.settings.storer.model_copy(
                update={"books": BooksSettings(mode="interval", interval_s=1.0)}
            )
        }
    )
    books = [h.book(i) for i in range(30)]  # BASE_MS is a whole minute: 10 books a second
    books[15] = h.book(15, bids=5)  # mid-second: left out, so never decoded whole
    async with h.storer(settings) as storer:
        await h.publish(books)
        await h.wait_for(lambda: _consumer_done(h, "storer-books"), what="all acked")

        def outcome(name: str) -> float:
            return storer.metric("fairprice_storer_messages_total", stream="books", outcome=name)

        assert (outcome("thinned"), outcome("dead_letter")) == (27, 0)
    rows = await h.rows("SELECT update_id FROM orderbook")
    start = books[0].event_time_ms
    assert rows == [
        {"time": start, "update_id": 1000},
        {"time": start + 1000, "update_id": 1010},
        {"time": start + 2000, "update_id": 1020},
    ]


async def test_retention_policy_created_and_changed_idempotently(h: Harness) -> None:
    for duration in ("30d", "30d", "7d"):
        influx = h.settings.influx.model_copy(update={"retention_duration": duration})
        settings = h.settings.model_copy(update={"influx": influx})
        async with h.storer(settings):
            pass
    async with httpx.AsyncClient(base_url=h.influxd.admin_url) as client:
        response = await client.get(
            "/query", params={"q": 'SHOW RETENTION POLICIES ON "fair_price"'}
        )
    series = response.json()["results"][0]["series"][0]
    policies = {row[0]: dict(zip(series["columns"], row, strict=True)) for row in series["values"]}
    assert policies["fairprice"]["duration"] == "168h0m0s"
    assert policies["fairprice"]["default"] is True


async def test_database_dropped_while_running_is_created_again(h: Harness) -> None:
    async with h.storer(h.settings) as storer:
        await h.publish([h.book(i) for i in range(10)])
        await h.wait_count("orderbook", "update_id", 10)
        async with httpx.AsyncClient(base_url=h.influxd.admin_url) as client:
            await client.post("/query", data={"q": 'DROP DATABASE "fair_price"'})
        await h.publish([h.book(i) for i in range(10, 30)])
        await h.wait_count("orderbook", "update_id", 20)
        assert storer.metric("fairprice_storer_write_errors_total", kind="not_found") >= 1
    rows = await h.rows("SELECT update_id FROM orderbook")
    assert [row["update_id"] for row in rows] == list(range(1010, 1030))


async def test_nats_restart_while_storing_loses_nothing(
    h: Harness, nats_server: NatsServer
) -> None:
    books = [h.book(i, symbol=f"S{i % 3}") for i in range(2000)]
    async with h.storer(h.settings):
        await h.publish(books[:1000])
        await h.wait_count("orderbook", "update_id", 1000)
        await nats_server.restart()
        await h.publish(books[1000:])
        await h.wait_count("orderbook", "update_id", 2000)
        await h.wait_for(lambda: _consumer_done(h, "storer-books"), what="all acked")
    stored = {row["update_id"] for row in await h.rows_all("SELECT update_id FROM orderbook")}
    assert stored == {b.update_id for b in books}
