"""The random-walk books: determinism, update ids, depth, history."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fairprice.simulator import HistoryError, MarketSettings
from fairprice.simulator.market import Market, StepResult, SymbolBook


def _events(settings: MarketSettings, symbol: str, steps: int) -> list[StepResult | None]:
    book = Market(settings).book(symbol)
    return [book.step() for _ in range(steps)]


def test_market_same_seed_same_events() -> None:
    settings = MarketSettings(seed=7)
    assert _events(settings, "BTCUSDT", 300) == _events(settings, "BTCUSDT", 300)


def test_market_other_seed_or_symbol_other_events() -> None:
    base = _events(MarketSettings(seed=7), "BTCUSDT", 50)
    assert base != _events(MarketSettings(seed=8), "BTCUSDT", 50)
    assert base != _events(MarketSettings(seed=7), "ETHUSDT", 50)


def test_market_update_ids_are_contiguous_and_span_several() -> None:
    book = Market(MarketSettings()).book("BTCUSDT")
    previous = book.last_update_id
    spans = set()
    for _ in range(200):
        event = book.step()
        assert event is not None
        assert event.first_id == previous + 1
        spans.add(event.final_id - event.first_id)
        previous = event.final_id
    assert len(spans) > 1


def test_market_book_is_deep_uncrossed_and_deletes() -> None:
    book = Market(MarketSettings()).book("BTCUSDT")
    deletions = 0
    for _ in range(500):
        event = book.step()
        assert event is not None
        deletions += sum(1 for q in [*event.bids.values(), *event.asks.values()] if q == 0)
    view = book.top(5000)
    assert len(view.bids) > 1000 and len(view.asks) > 1000
    assert Decimal(view.bids[0][0]) < Decimal(view.asks[0][0])
    bid_prices = [Decimal(p) for p, _ in view.bids]
    ask_prices = [Decimal(p) for p, _ in view.asks]
    assert bid_prices == sorted(bid_prices, reverse=True)
    assert ask_prices == sorted(ask_prices)
    assert deletions > 0


def _apply(book: dict[str, str], levels: list[list[str]]) -> None:
    for price, qty in levels:
        if Decimal(qty) == 0:
            book.pop(price, None)
        else:
            book[price] = qty


def test_market_book_at_matches_replayed_events() -> None:
    """Rebuilding an old book from the undo history equals replaying the events onto it."""
    book = Market(MarketSettings(history_ticks=100)).book("ETHUSDT")
    start = book.top(5000)
    bids = {p: q for p, q in start.bids}
    asks = {p: q for p, q in start.asks}
    ids = []
    for _ in range(60):
        event = book.step()
        assert event is not None
        _apply(bids, book.levels(event.bids))
        _apply(asks, book.levels(event.asks))
        ids.append((event.final_id, dict(bids), dict(asks)))
    for final_id, want_bids, want_asks in ids[::7]:
        view = book.book_at(final_id, 5000)
        assert view.last_update_id == final_id
        assert dict(map(tuple, view.bids)) == want_bids
        assert dict(map(tuple, view.asks)) == want_asks


def test_market_book_at_outside_history_raises() -> None:
    book: SymbolBook = Market(MarketSettings(history_ticks=10)).book("BTCUSDT")
    first = book.last_update_id
    for _ in range(30):
        book.step()
    with pytest.raises(HistoryError):
        book.book_at(first, 10)
    with pytest.raises(HistoryError):
        book.book_at(book.last_update_id + 1, 10)
    oldest, newest = book.history_range()
    assert book.book_at(oldest, 10).last_update_id == oldest
    assert newest == book.last_update_id


def test_market_symbols_from_names_and_pattern() -> None:
    market = Market(
        MarketSettings(symbols=["btcusdt"], generated_symbols=3, symbol_pattern="X{n}BTC")
    )
    assert list(market.specs) == ["BTCUSDT", "X0BTC", "X1BTC", "X2BTC"]
    assert market.specs["X1BTC"].quote_asset == "BTC"
    assert market.specs["BTCUSDT"].base_asset == "BTC"


def test_a_trend_walks_the_price_through_the_levels() -> None:
    book = Market(MarketSettings(seed=7)).book("BTCUSDT")
    start = book.center
    book.trend = 250
    for _ in range(250):
        book.step()
    assert book.center == start + 250 and book.trend == 0
    # The asks it walked through are gone: every ask is above the path the price took.
    assert Decimal(book.top(1).asks[0][0]) > Decimal(book.price(start + 249))
    book.trend = -40
    for _ in range(40):
        book.step()
    assert book.center == start + 210


def test_market_drift_moves_the_price_on_purpose_and_history_stays_exact() -> None:
    """``drift(1.5, 20)``: the centre is 1.5 % higher after 20 steps, then back with -1.5 %;
    the book stays uncrossed and the true book of any kept update id still replays."""
    book = Market(MarketSettings()).book("BTCUSDT")
    for _ in range(20):
        book.step()
    start = book.center
    ticks = book.drift(1.5, 20)
    assert ticks == round(start * 0.015)
    middle_id = 0
    for n in range(20):
        book.step()
        best = book.best()
        assert best is not None and best[0] < best[2]
        if n == 10:
            middle_id = book.last_update_id
    # The random walk moves at most one tick a step besides the drift.
    assert abs(book.center - (start + ticks)) <= 20
    view = book.book_at(middle_id, 5)
    assert view.last_update_id == middle_id and view.bids and view.asks
    book.drift(-1.5, 20)
    for _ in range(20):
        book.step()
    assert abs(book.center - start) <= 40 + abs(ticks) * 0.02
