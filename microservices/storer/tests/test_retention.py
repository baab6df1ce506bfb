"""Nothing lost silently to retention: books that BOOKS discarded before the storer was given
them are counted exactly (fairprice_storer_messages_lost_total) and logged once, and every book
it kept is stored once InfluxDB is back. Real nats-server and influxd, the storer in-process."""

from __future__ import annotations

import msgspec
from prometheus_client import CollectorRegistry, Counter
from structlog.testing import capture_logs

from fairprice.common.messages import Book, encode
from fairprice.common.settings import StreamLimits
from fairprice.common.subjects import Stream, book_msg_id, books_subject
from fairprice.storer.retention import DeliveryLedger, Run

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


async def test_two_replicas_count_the_books_discarded_before_either_was_given_them(
    h: Harness,
) -> None:
    """Two storer replicas share the durable, so each sees a gap in stream sequence wherever
    the other was given books: only the announced deliveries (retention.DeliveryLedger) tell
    those from books nobody was given. Three outages, each until the stream discards books
    nobody holds: summed over both replicas, the loss is exactly what is missing from
    InfluxDB, and each replica took its share of the books."""
    streams = h.settings.nats.streams.model_copy(update={"books": TINY_BOOKS})
    nats = h.settings.nats.model_copy(update={"streams": streams})
    section = h.settings.storer.model_copy(update={"batch_size": 5, "max_ack_pending": 10})
    settings = h.settings.model_copy(update={"nats": nats, "storer": section})
    books = [h.book(i) for i in range(1200)]
    async with h.storer(settings) as first, h.storer(settings) as second:
        replicas = (first, second)

        def total(name: str, **labels: str) -> float:
            return sum(r.metric(name, stream="books", **labels) for r in replicas)

        def total_lost() -> float:
            return total("fairprice_storer_messages_lost_total")

        for wave in range(3):
            start = wave * 400
            await h.publish(books[start : start + 40])
            await h.wait_count("orderbook", "update_id", start + 40 - int(total_lost()))
            h.influxd.stop()
            await h.publish(books[start + 40 : start + 400])

            async def discarded_undelivered(start: int = start) -> bool:
                stream = await h.bus.jsm.stream_info(Stream.BOOKS.value)
                return stream.state.first_seq > start + 40 + 10 + 1

            await h.wait_for(discarded_undelivered, what="BOOKS discarding undelivered books")
            await h.influxd.start()

            async def all_accounted_for(end: int = start + 400) -> bool:
                stored = total("fairprice_storer_messages_total", outcome="stored")
                info = await h.bus.jsm.consumer_info(Stream.BOOKS.value, "storer-books")
                acked = info.num_pending == 0 and info.num_ack_pending == 0
                return acked and stored + total_lost() >= end

            await h.wait_for(all_accounted_for, within=60, what="every book stored or lost")
        shares = [
            r.metric("fairprice_storer_messages_total", stream="books", outcome="stored")
            for r in replicas
        ]
        lost = total_lost()
    stored = {row["update_id"] for row in await h.rows_all("SELECT update_id FROM orderbook")}
    missing = {b.update_id for b in books} - stored
    assert missing, "the stream discarded nothing: the test proves nothing"
    assert all(share > 0 for share in shares), shares
    assert lost == len(missing)
    assert stored == {b.update_id for b in books} - missing


def _ledger(lost: Counter, hold_s: float) -> DeliveryLedger:
    ledger = DeliveryLedger("books", lost.labels("books"), hold_s=hold_s)
    ledger.start_at(consumer_seq=10, stream_seq=10)
    return ledger


def _announce(ledger: DeliveryLedger, replica: str, *runs: Run) -> None:
    ledger.receive(msgspec.json.encode({"replica": replica, "runs": runs}))


def test_the_ledger_counts_each_gap_once_at_the_replica_given_the_message_after_it() -> None:
    """Replica A (this ledger's) and B alternate; B's books are no loss for A, the jump over
    seqs 21-25 before A's run is A's, the one before B's run (26-29) is B's, a redelivery
    takes a consumer sequence and no stream sequence; B's announcement arriving late holds A's
    run back until it comes."""
    lost = Counter("lost", "", ["stream"], registry=CollectorRegistry())
    ledger = _ledger(lost, hold_s=3600)
    mine = ledger.replica
    _announce(ledger, mine, Run(11, 11, 5))  # stream 11-15
    _announce(ledger, mine, Run(21, 26, 3))  # after B's 16-20 and a jump over 21-25: held
    assert lost.labels("books")._value.get() == 0
    _announce(ledger, "b", Run(16, 16, 5))  # B: stream 16-20
    assert lost.labels("books")._value.get() == 5
    _announce(ledger, "b", Run(24, 0, 2), Run(26, 30, 2))  # 2 redeliveries, jump over 29
    _announce(ledger, mine, Run(28, 32, 1))
    assert lost.labels("books")._value.get() == 5  # 26-28 A's, 29 lost: B's to count
    assert ledger.replica == mine


def test_the_ledger_passes_over_deliveries_nobody_announced_without_counting_after() -> None:
    lost = Counter("lost", "", ["stream"], registry=CollectorRegistry())
    ledger = _ledger(lost, hold_s=0)
    with capture_logs() as logs:
        _announce(ledger, ledger.replica, Run(14, 20, 2))  # 11-13 never announced
        _announce(ledger, ledger.replica, Run(16, 25, 1))  # 22-24 lost
    assert lost.labels("books")._value.get() == 3
    assert [e["event"] for e in logs][0].startswith("deliveries nobody announced")


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
