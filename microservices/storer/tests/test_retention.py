"""Nothing lost silently to retention: books that BOOKS discarded before the storer was given
them are counted exactly (fairprice_storer_messages_lost_total) and logged once, and every book
it kept is stored once InfluxDB is back. Real nats-server and influxd, the storer in-process."""

from __future__ import annotations

from structlog.testing import capture_logs

from fairprice.common.messages import Book, encode
from fairprice.common.settings import StreamLimits
from fairprice.common.subjects import Stream, book_msg_id, books_subject

from .conftest import Harness

# About 100 books of this test: the stream discards the oldest past it.
TINY_BOOKS = StreamLimits(max_age_s=3600, max_bytes=30_000)


async def test_books_discarded_while_influxdb_is_down_are_counted_exactly(h: Harness) -> None:
    streams = h.settings.nats.streams.model_copy(update={"books": TINY_BOOKS})
    nats = h.settings.nats.model_copy(update={"streams": streams})
    # A replica holds at most 10 books unacked: the rest waits in the stream, where it can go.
    section = h.settings.storer.model_copy(update={"batch_size": 10, "max_ack_pending": 10})
    settings = h.settings.model_copy(update={"nats": nats, "storer": section})
    books = [h.book(i) for i in range(1200)]
    with capture_logs() as logs:
        async with h.storer(settings) as storer:
            await h.publish(books[:20])
            await h.wait_count("orderbook", "update_id", 20)
            h.influxd.stop()
            await h.publish(books[20:])

            async def discarded_undelivered() -> bool:
                # Past the 20 stored and the 10 held: books that nobody was given are gone.
                stream = await h.bus.jsm.stream_info(Stream.BOOKS.value)
                return stream.state.first_seq > 20 + 10 + 1

            await h.wait_for(discarded_undelivered, what="BOOKS discarding undelivered books")
            await h.influxd.start()

            def lost() -> float:
                return storer.metric("fairprice_storer_messages_lost_total", stream="books")

            async def all_accounted_for() -> bool:
                # Not "nothing pending or unacked": the stream can discard a batch that a
                # writer still holds (and is retrying), which drops it from the consumer's
                # pending acks while it is not stored yet.
                stored = storer.metric(
                    "fairprice_storer_messages_total", stream="books", outcome="stored"
                )
                info = await h.bus.jsm.consumer_info(Stream.BOOKS.value, "storer-books")
                acked = info.num_pending == 0 and info.num_ack_pending == 0
                return acked and stored + lost() >= len(books)

            await h.wait_for(all_accounted_for, within=60, what="every book stored or lost")
    stored = {row["update_id"] for row in await h.rows_all("SELECT update_id FROM orderbook")}
    missing = {b.update_id for b in books} - stored
    assert missing, "the stream discarded nothing: the test proves nothing"
    assert lost() == len(missing)
    # Every book the stream kept, and those the storer held while InfluxDB was down, is
    # stored; each loss is one log line with the run of sequences it lost.
    losses = [e for e in logs if e["event"].startswith("messages discarded by the stream")]
    assert sum(e["count"] for e in losses) == len(missing)
    assert all(e["last_seq"] - e["first_seq"] + 1 == e["count"] for e in losses)
    assert stored == {b.update_id for b in books} - missing


def test_sizing_rule_of_the_docs_holds_for_a_depth_20_book() -> None:
    """docs/storer.md: a depth-20 book is about 1.5 kB in BOOKS (16 kB/s per symbol at 10
    books/s), so 2 GiB holds about 2.2 min at 1,000 symbols."""
    book = Book(
        exchange="binance",
        symbol="BTCUSDT",
        update_id=72_345_678_901,
        first_update_id=72_345_678_890,
        event_time_ms=1_767_225_600_123,
        receive_time_ms=1_767_225_600_130,
        bids=[(f"97123.{i:02d}000000", "0.12345000") for i in range(20)],
        asks=[(f"97124.{i:02d}000000", "1.23400000") for i in range(20)],
    )
    subject = books_subject("binance", "BTCUSDT")
    msg_id = book_msg_id("binance", "BTCUSDT", book.update_id)
    size = len(encode(book)) + len(subject) + len("Nats-Msg-Id: \r\n") + len(msg_id)
    assert 1_400 <= size <= 1_600
    holds_s = 2 * 1024**3 / (1_000 * 10 * size)
    assert 130 <= holds_s <= 150  # 2.2 min to 2.5 min
