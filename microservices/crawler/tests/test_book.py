"""The order book: exact decimal keys, deletes, top-N and whether it changed."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from fairprice.common.errors import InvalidMessageError
from fairprice.crawler import book as book_module
from fairprice.crawler.book import OrderBook, price_key


def test_price_key_is_exact_and_ordered() -> None:
    assert price_key("1.5") == price_key("1.50000000")
    # Two prices a float cannot tell apart stay distinct and ordered.
    assert float("0.100000000000000001") == float("0.1")
    assert price_key("0.100000000000000001") > price_key("0.1")
    assert price_key("10") > price_key("9.99999999")
    with pytest.raises(InvalidMessageError):
        price_key("1.0000000000000000001")
    with pytest.raises(InvalidMessageError):
        price_key("abc")


def test_book_keeps_the_exchange_strings_best_first() -> None:
    book = OrderBook()
    book.load(
        10,
        [("0.35200000", "1.0"), ("0.35210000", "2.0"), ("0.35000000", "0.00000000")],
        [("0.35300000", "3.0"), ("0.35250000", "4.0")],
    )
    assert book.bids(5) == [("0.35210000", "2.0"), ("0.35200000", "1.0")]
    assert book.asks(5) == [("0.35250000", "4.0"), ("0.35300000", "3.0")]
    assert book.update_id == 10 and len(book) == 4


def test_apply_updates_deletes_and_reports_top_changes() -> None:
    book = OrderBook()
    book.load(1, [(str(100 - i), "1") for i in range(10)], [(str(101 + i), "1") for i in range(10)])
    # A level below the top 3 bids changes nothing in the top 3.
    assert not book.apply(2, [("95", "7")], [], depth=3)
    # Deleting a level we never had changes nothing.
    assert not book.apply(3, [("50.5", "0")], [], depth=3)
    # Quantity zero deletes; a deleted top level is replaced by the next one.
    assert book.apply(4, [("100", "0.000")], [], depth=3)
    assert book.bids(3) == [("99", "1"), ("98", "1"), ("97", "1")]
    # A new best ask inside the top.
    assert book.apply(5, [], [("100.5", "2")], depth=3)
    assert book.asks(2) == [("100.5", "2"), ("101", "1")]
    # The same price spelt differently is the same level.
    assert book.apply(6, [("99.000", "5")], [], depth=3)
    assert book.bids(1) == [("99.000", "5")]
    assert book.update_id == 6


def test_apply_on_a_thin_book_always_changes_the_top() -> None:
    book = OrderBook()
    book.load(1, [("1", "1")], [])
    assert book.apply(2, [("0.5", "1")], [], depth=5)
    assert book.apply(3, [], [("9", "1")], depth=5)


@pytest.mark.parametrize("cached_keys", [book_module._MAX_CACHED_KEYS, 8])
def test_book_matches_a_reference_book_on_random_events(
    cached_keys: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against a plain Decimal-keyed dict: the top N after every event, and ``changed``
    exactly when the top N differs from before (or conservatively when it may). Also with
    the sort keys' cache bounded to 8 prices a side, so that it is emptied again and again:
    the same books, and the cache never holds more."""
    monkeypatch.setattr(book_module, "_MAX_CACHED_KEYS", cached_keys)
    book_module._BID_KEYS.clear()
    book_module._ASK_KEYS.clear()
    rng = random.Random(11)
    depth = 5
    book = OrderBook()
    reference: dict[str, dict[Decimal, tuple[str, str]]] = {"b": {}, "a": {}}

    def top(side: str) -> list[tuple[str, str]]:
        ordered = sorted(reference[side].items(), reverse=side == "b")
        return [level for _, level in ordered[:depth]]

    def level(base: int) -> tuple[str, str]:
        price = f"{base + rng.randint(0, 15)}.{rng.randint(0, 9)}5"
        if rng.random() < 0.2:
            price += "0"  # another spelling of a price that may be in the book
        qty = "0.000" if rng.random() < 0.35 else f"{rng.uniform(0.1, 9):.3f}"
        return price, qty

    book.load(0, [], [])
    after: tuple[list[tuple[str, str]], list[tuple[str, str]]] = ([], [])
    for update_id in range(1, 3000):
        bids = [level(100) for _ in range(rng.randint(0, 6))]
        asks = [level(200) for _ in range(rng.randint(0, 6))]
        before = after
        for side, changes in (("b", bids), ("a", asks)):
            for price, qty in changes:
                if Decimal(qty) == 0:
                    reference[side].pop(Decimal(price), None)
                else:
                    reference[side][Decimal(price)] = (price, qty)
        changed = book.apply(update_id, bids, asks, depth)
        after = (top("b"), top("a"))
        assert (book.bids(depth), book.asks(depth)) == after
        if after != before:
            assert changed, update_id
        assert max(len(book_module._BID_KEYS), len(book_module._ASK_KEYS)) <= cached_keys
    assert book_module._BID_KEYS and book_module._ASK_KEYS


def test_a_price_that_is_no_number_is_refused_by_apply_and_never_cached() -> None:
    book = OrderBook()
    book.load(1, [("100", "1")], [("101", "1")])
    for _ in range(2):  # the second time too: nothing was cached for it
        with pytest.raises(InvalidMessageError, match="not a decimal number"):
            book.apply(2, [("1O0.5", "1")], [], 5)
    assert "1O0.5" not in book_module._BID_KEYS


def test_the_window_edge_bounds_the_levels_a_book_vouches_for() -> None:
    book = OrderBook()
    # 3 levels asked a side: the bids came back full (edge at 0.8), the asks with 2 (whole).
    book.load(1, [("1.0", "1"), ("0.9", "1"), ("0.8", "1")], [("2.0", "1"), ("2.1", "1")], limit=3)
    bids, asks = book.windows()
    assert (bids.known, bids.edge) == (3, "0.8") and (asks.known, asks.edge) == (2, None)
    # Beyond the bid edge: held, right, but not vouched for (0.75 may be missing).
    book.apply(2, [("0.7", "5")], [("2.5", "1")], depth=5)
    assert book.bids(5) == [("1.0", "1"), ("0.9", "1"), ("0.8", "1")]
    assert book.asks(5) == [("2.0", "1"), ("2.1", "1"), ("2.5", "1")]  # the whole side
    # Inside the edge, a diff keeps the book exact: new levels count, deleted ones do not.
    book.apply(3, [("0.85", "2"), ("1.0", "0"), ("0.9", "0")], [], depth=5)
    assert book.bids(5) == [("0.85", "2"), ("0.8", "1")] and book.known_bids() == 2
    assert book.thin(3) and not book.thin(2)
    # The edge is a price, not a level: deleting the snapshot's worst level keeps it.
    book.apply(4, [("0.8", "0")], [], depth=5)
    assert book.bids(5) == [("0.85", "2")] and book.windows()[0].edge == "0.8"


def test_a_snapshot_of_unknown_limit_is_whole_only_when_empty() -> None:
    book = OrderBook()
    book.load(1, [("1.0", "1")], [])
    assert book.windows()[0].edge == "1.0" and book.windows()[1].edge is None
    book.apply(2, [("0.5", "1")], [("3.0", "1")], depth=5)
    assert book.bids(5) == [("1.0", "1")] and book.asks(5) == [("3.0", "1")]


def test_without_the_window_check_every_level_is_trusted() -> None:
    book = OrderBook(window_check=False)
    book.load(1, [("1.0", "1")], [("2.0", "1")], limit=1)
    book.apply(2, [("0.5", "1")], [], depth=5)
    assert book.bids(5) == [("1.0", "1"), ("0.5", "1")] and not book.thin(10)
