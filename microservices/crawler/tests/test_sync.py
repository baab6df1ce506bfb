"""The sync state machine on hand-made events: Binance's rules, one symbol at a time."""

from __future__ import annotations

from fairprice.crawler.binance import Binance
from fairprice.crawler.exchange import DepthEvent, Snapshot
from fairprice.crawler.sync import State, SyncEngine
from fairprice.crawler.window import WindowPolicy


def _event(symbol: str, first: int, last: int, price: str = "1.0") -> DepthEvent:
    return DepthEvent(symbol, first, last, 1000 + last, [(price, str(last))], [])


def _engine() -> tuple[SyncEngine, list[str]]:
    requested: list[str] = []
    engine = SyncEngine(Binance(), depth=5, request_snapshot=requested.append)
    engine.add("AAA")
    engine.add("BBB")
    return engine, requested


def _synced(engine: SyncEngine, symbol: str, snapshot_id: int) -> None:
    engine.on_event(_event(symbol, snapshot_id - 1, snapshot_id), 0)
    assert engine.on_snapshot(symbol, Snapshot(snapshot_id, [], [])) == []
    assert engine.symbols[symbol].state is State.SYNCED


def test_snapshot_is_requested_once_at_the_first_event_and_buffered_events_apply() -> None:
    engine, requested = _engine()
    for first in (10, 13, 16):
        assert engine.on_event(_event("AAA", first, first + 2), 5) is None
    assert requested == ["AAA"]
    books = engine.on_snapshot("AAA", Snapshot(13, [], []))
    # 10..12 dropped (u <= 13), 13..15 contains 14 = lastUpdateId + 1, then 16..18.
    assert [(b.first_update_id, b.update_id) for b in books] == [(13, 15), (16, 18)]
    sync = engine.symbols["AAA"]
    assert (sync.events, sync.dropped, sync.applied) == (3, 1, 2)
    assert books[0].receive_time_ms == 5 and books[0].event_time_ms == 1015


def test_stale_snapshot_is_refetched_and_keeps_the_buffer() -> None:
    engine, requested = _engine()
    engine.on_event(_event("AAA", 10, 12), 0)
    assert engine.on_snapshot("AAA", Snapshot(9, [], [])) == []
    assert requested == ["AAA", "AAA"]
    assert engine.symbols["AAA"].state is State.BUFFERING
    books = engine.on_snapshot("AAA", Snapshot(11, [], []))
    assert [b.update_id for b in books] == [12]
    assert dict(engine.resyncs) == {"initial": 1, "stale_snapshot": 1}


def test_first_event_must_contain_snapshot_id_plus_one() -> None:
    engine, requested = _engine()
    engine.on_event(_event("AAA", 10, 12), 0)
    engine.on_event(_event("AAA", 15, 17), 0)  # 13..14 never came
    assert engine.on_snapshot("AAA", Snapshot(12, [], [])) == []
    assert engine.symbols["AAA"].state is State.BUFFERING
    assert dict(engine.symbols["AAA"].resyncs) == {"initial": 1, "gap": 1}
    assert requested == ["AAA", "AAA"]


def test_gap_resyncs_that_symbol_only() -> None:
    engine, requested = _engine()
    _synced(engine, "AAA", 10)
    _synced(engine, "BBB", 50)
    requested.clear()
    assert engine.on_event(_event("AAA", 11, 12), 0) is not None
    assert engine.on_event(_event("BBB", 51, 52), 0) is not None
    assert engine.on_event(_event("AAA", 14, 15), 0) is None  # 13 is missing
    assert requested == ["AAA"]
    assert engine.symbols["AAA"].state is State.BUFFERING
    assert engine.symbols["AAA"].book.update_id == 0  # discarded
    assert engine.symbols["BBB"].state is State.SYNCED
    assert engine.on_event(_event("BBB", 53, 53), 0) is not None
    assert engine.synced_count == 1
    # The event that showed the gap is buffered: a snapshot at 14 resumes from it.
    books = engine.on_snapshot("AAA", Snapshot(14, [], []))
    assert [b.update_id for b in books] == [15]


def test_events_already_held_are_ignored_not_gaps() -> None:
    """A second connection during a handover delivers events twice."""
    engine, requested = _engine()
    _synced(engine, "AAA", 10)
    assert engine.on_event(_event("AAA", 11, 12), 0) is not None
    assert engine.on_event(_event("AAA", 11, 12), 0) is None
    assert engine.on_event(_event("AAA", 13, 13), 0) is not None
    assert engine.symbols["AAA"].dropped == 2 and requested == ["AAA"]  # one at the snapshot


def test_only_top_changes_are_published_unless_every_event() -> None:
    engine, _ = _engine()
    engine.on_event(_event("AAA", 1, 1), 0)
    bids = [(str(100 - i), "1") for i in range(10)]
    engine.on_snapshot("AAA", Snapshot(1, bids, []))
    first = DepthEvent("AAA", 2, 2, 0, [("91", "5")], [])
    assert engine.on_event(first, 0) is not None  # the first after a snapshot: always
    deep = DepthEvent("AAA", 3, 3, 0, [("91", "6")], [])
    assert engine.on_event(deep, 0) is None  # level 10 of 10: below the top 5
    top = DepthEvent("AAA", 4, 4, 0, [("100", "2")], [])
    book = engine.on_event(top, 0)
    assert book is not None and book.bids[0] == ("100", "2") and len(book.bids) == 5
    engine.every_event = True
    assert engine.on_event(DepthEvent("AAA", 5, 5, 0, [("91", "7")], []), 0) is not None


def test_removed_symbol_events_are_counted_and_ignored() -> None:
    engine, _ = _engine()
    _synced(engine, "AAA", 10)
    engine.update(["BBB"])
    assert "AAA" not in engine.symbols and engine.synced_count == 0
    assert engine.on_event(_event("AAA", 11, 11), 0) is None
    assert engine.events_unowned == 1


def test_an_invalid_price_resyncs_that_symbol_instead_of_failing() -> None:
    engine, requested = _engine()
    _synced(engine, "AAA", 10)
    requested.clear()
    bad = DepthEvent("AAA", 11, 11, 0, [("1.0", "1"), ("1.x", "2")], [])
    assert engine.on_event(bad, 0) is None
    assert engine.symbols["AAA"].state is State.BUFFERING
    assert engine.symbols["AAA"].resyncs["invalid_event"] == 1
    assert requested == ["AAA"]
    # The next event starts the buffer for the new snapshot.
    engine.on_event(_event("AAA", 12, 12), 0)
    engine.on_event(_event("AAA", 13, 13), 0)
    assert [b.update_id for b in engine.on_snapshot("AAA", Snapshot(12, [], []))] == [13]


def test_a_quiet_symbol_is_synced_without_waiting_for_an_event() -> None:
    engine, requested = _engine()
    engine.on_event(_event("BBB", 5, 5), 0)  # BBB is not quiet
    assert engine.start_quiet(after_s=0) == 1
    assert requested == ["BBB", "AAA"]
    assert engine.on_snapshot("AAA", Snapshot(40, [("1.0", "1")], [])) == []
    assert engine.symbols["AAA"].state is State.SYNCED
    assert engine.on_event(_event("AAA", 39, 40), 0) is None  # already in the snapshot
    book = engine.on_event(_event("AAA", 41, 42), 0)
    assert book is not None and book.first_update_id == 41
    assert engine.start_quiet(after_s=0) == 0


def _synced_with(engine: SyncEngine, symbol: str, snapshot: Snapshot) -> None:
    engine.on_event(_event(symbol, snapshot.last_id, snapshot.last_id), 0)
    engine.on_snapshot(symbol, snapshot)
    assert engine.symbols[symbol].synced


def test_refresh_widens_a_book_that_lost_its_window_without_a_gap() -> None:
    engine, requested = _engine()
    # The first snapshot was shallow: it ends at bid 1.0, and a deeper one also has 0.5.
    _synced_with(engine, "AAA", Snapshot(10, [("1.0", "1")], [("2.0", "1")]))
    requested.clear()
    assert engine.refresh("AAA") and not engine.refresh("AAA")
    assert requested == ["AAA"]
    # Events flow on and are published while the refresh snapshot is on the way.
    e11 = DepthEvent("AAA", 11, 11, 0, [("1.0", "0")], [])  # the best bid leaves
    book = engine.on_event(e11, 0)
    # The live book cannot vouch for any bid now: 0.5 lies beyond its window's edge (1.0).
    assert book is not None and book.bids == [] and book.bids_known == 0
    book = engine.on_event(DepthEvent("AAA", 12, 12, 0, [], [("2.5", "3")]), 0)
    # 2.5 lies beyond the asks' edge (2.0): held, right, but not published.
    assert book is not None and book.asks == [("2.0", "1")] and book.asks_known == 1
    # The refresh snapshot is as of 11 and has the deep level.
    deep = Snapshot(11, [("0.5", "4")], [("2.0", "1"), ("2.5", "3"), ("3.0", "1")], limit=3)
    assert engine.on_snapshot("AAA", deep) == []
    sync = engine.symbols["AAA"]
    assert sync.synced and sync.book.update_id == 12
    assert sync.book.bids(5) == [("0.5", "4")]  # 1 level of 3 asked: the whole side
    assert sync.book.asks(5) == [("2.0", "1"), ("2.5", "3"), ("3.0", "1")]
    # Nothing the live book published was wrong: it showed less, not something false.
    assert dict(engine.refreshes) == {"ok": 1}
    # The wider top is published with the next event, whatever it touches.
    book = engine.on_event(DepthEvent("AAA", 13, 13, 0, [], [("9.0", "1")]), 0)
    assert book is not None and book.bids == [("0.5", "4")] and book.bids_known == 1
    assert dict(sync.resyncs) == {"initial": 1}  # never out of sync


def test_refresh_that_contradicts_a_published_level_counts_a_correction() -> None:
    engine, _ = _engine()
    _synced_with(engine, "AAA", Snapshot(10, [("1.0", "1"), ("0.9", "1")], [], limit=5))
    engine.refresh("AAA")
    engine.on_snapshot("AAA", Snapshot(10, [("1.0", "2"), ("0.9", "1")], [], limit=5))
    assert dict(engine.refreshes) == {"corrected": 1}
    book = engine.on_event(DepthEvent("AAA", 11, 11, 0, [], [("5.0", "1")]), 0)
    assert book is not None and book.bids == [("1.0", "2"), ("0.9", "1")]


def test_refresh_snapshot_ahead_of_the_stream_waits_for_it() -> None:
    engine, _ = _engine()
    _synced_with(engine, "AAA", Snapshot(10, [("1.0", "1")], [], limit=5))
    engine.refresh("AAA")
    engine.on_event(_event("AAA", 11, 11), 0)
    # As of 13 while the live book is at 11: held until the stream has caught up.
    engine.on_snapshot("AAA", Snapshot(13, [("1.0", "13"), ("0.5", "7")], [], limit=5))
    sync = engine.symbols["AAA"]
    assert sync.refreshing and sync.book.update_id == 11 and not engine.refreshes
    assert engine.on_event(_event("AAA", 12, 12), 0) is not None
    assert sync.refreshing  # 12 < 13
    engine.on_event(_event("AAA", 13, 13), 0)
    assert not sync.refreshing and dict(engine.refreshes) == {"ok": 1}
    assert sync.book.update_id == 13 and sync.book.bids(5) == [("1.0", "13"), ("0.5", "7")]


def test_refresh_with_an_unusable_snapshot_keeps_the_live_book() -> None:
    engine, _ = _engine()
    _synced_with(engine, "AAA", Snapshot(10, [("1.0", "1")], []))
    engine.on_event(_event("AAA", 11, 11), 0)
    engine.refresh("AAA")
    engine.on_event(_event("AAA", 12, 12), 0)
    engine.on_event(_event("AAA", 13, 13), 0)
    engine.on_snapshot("AAA", Snapshot(10, [], []))  # older than the events kept (12..)
    engine.refresh("AAA")
    engine.snapshot_failed("AAA")  # the fetch gave up
    assert dict(engine.refreshes) == {"skipped": 1, "failed": 1}
    sync = engine.symbols["AAA"]
    assert sync.synced and sync.book.update_id == 13 and not sync.refreshing
    assert sync.book.bids(5) == [("1.0", "13")]


def test_a_thin_window_is_deepened_in_the_background_without_a_gap() -> None:
    requested: list[str] = []
    window = WindowPolicy.for_depth(2, (4, 8, 16), max_limit=8)
    assert (window.first_limit, window.low_water) == (4, 2)
    engine = SyncEngine(Binance(), depth=2, request_snapshot=requested.append, window=window)
    engine.add("AAA")
    assert engine.snapshot_limit("AAA") == 4
    bids = [("1.0", "1"), ("0.9", "1"), ("0.8", "1"), ("0.7", "1")]
    _synced_with(engine, "AAA", Snapshot(10, bids, [], limit=4))
    requested.clear()
    # The price falls through the bids: 3 of the 4 are gone, 1 known level is below low water.
    books = [engine.on_event(DepthEvent("AAA", 11, 11, 0, [(p, "0") for p, _ in bids[:3]], []), 0)]
    assert books[0] is not None and books[0].bids == [("0.7", "1")] and books[0].bids_known == 1
    assert requested == ["AAA"] and engine.snapshot_limit("AAA") == 8
    assert dict(engine.rewindows) == {8: 1} and engine.books_short == 1
    sync = engine.symbols["AAA"]
    assert sync.refreshing and sync.rewindowing
    # Events keep coming and publishing while the deeper snapshot is on the way.
    books.append(engine.on_event(DepthEvent("AAA", 12, 12, 0, [("0.65", "2")], []), 0))
    assert requested == ["AAA"]  # asked once
    deeper = [("0.7", "1"), ("0.6", "3"), ("0.5", "1"), ("0.4", "1")]
    assert engine.on_snapshot("AAA", Snapshot(11, deeper, [], limit=8)) == []
    assert not sync.refreshing and sync.limit == 8
    books.append(engine.on_event(DepthEvent("AAA", 13, 13, 0, [], [("5.0", "1")]), 0))
    assert [(b.first_update_id, b.update_id) for b in books if b] == [(11, 11), (12, 12), (13, 13)]
    last = books[-1]
    assert last is not None and last.bids == [("0.7", "1"), ("0.65", "2")]
    assert last.bids_known == 5  # the whole side: 4 of 8 asked, and 0.65 from a diff
    assert dict(engine.refreshes) == {"ok": 1} and dict(sync.resyncs) == {"initial": 1}


def test_a_resync_starts_over_from_the_first_window() -> None:
    window = WindowPolicy.for_depth(2, (4, 8, 16))
    assert window.deeper(4) == 8 and window.deeper(16) == 16 and window.deeper(None) == 4
    engine = SyncEngine(Binance(), depth=2, window=window)
    engine.add("AAA")
    _synced_with(engine, "AAA", Snapshot(10, [("1.0", "1")] * 4, [], limit=4))
    engine.symbols["AAA"].next_limit = 16
    engine.on_event(_event("AAA", 20, 20), 0)  # a gap
    assert engine.snapshot_limit("AAA") == 4
