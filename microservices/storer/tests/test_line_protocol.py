"""Line protocol built from messages: escaping, field types, refusals, thinning."""

from __future__ import annotations

import pytest

from fairprice.common.errors import InvalidMessageError
from fairprice.common.messages import Book, Candle, FairPrice, IndicatorState, Signal
from fairprice.storer.line_protocol import (
    LineEncoder,
    escape_measurement,
    escape_string,
    escape_tag,
)


def _book(
    event_time_ms: int = 1_700_000_000_000,
    update_id: int = 7,
    bids: list[tuple[str, str]] | None = None,
    asks: list[tuple[str, str]] | None = None,
    symbol: str = "BTCUSDT",
) -> Book:
    return Book(
        exchange="binance",
        symbol=symbol,
        update_id=update_id,
        first_update_id=update_id,
        event_time_ms=event_time_ms,
        receive_time_ms=event_time_ms,
        bids=[("100.10", "1")] if bids is None else bids,
        asks=[("100.30", "0.5")] if asks is None else asks,
    )


def test_escaping_rules() -> None:
    assert escape_measurement("a b,c=d") == "a\\ b\\,c=d"
    assert escape_tag("a b,c=d") == "a\\ b\\,c\\=d"
    assert escape_string('say "hi" \\o/') == '"say \\"hi\\" \\\\o/"'


@pytest.mark.parametrize("value", ["", "ends\\", "two\nlines", "cr\r"])
def test_tag_values_line_protocol_cannot_carry_are_refused(value: str) -> None:
    with pytest.raises(InvalidMessageError):
        escape_tag(value)


def test_book_line_keeps_exchange_strings_and_types() -> None:
    line = LineEncoder().book(_book(bids=[("100.10", "1"), ("99", "2.50")]))
    assert line == (
        "orderbook,exchange=binance,symbol=BTCUSDT update_id=7i,"
        "bid_price_0=100.10,bid_qty_0=1,bid_price_1=99,bid_qty_1=2.50,"
        "ask_price_0=100.30,ask_qty_0=0.5,mid=100.20,spread=0.20 1700000000000"
    )


def test_one_sided_book_has_no_mid() -> None:
    line = LineEncoder().book(_book(asks=[]))
    assert line is not None
    assert "mid=" not in line and "ask_" not in line


@pytest.mark.parametrize(
    "price", ["1,evil=2", "5i", "t", "true", '"5"', "1 2", "nan", "inf", "", "1e5", "1E+5"]
)
def test_book_values_that_are_not_decimal_strings_are_refused(price: str) -> None:
    with pytest.raises(InvalidMessageError):
        LineEncoder().book(_book(bids=[("100", "1"), (price, "1")]))


def test_fair_price_without_impact_or_sma() -> None:
    price = FairPrice(
        exchange="binance",
        symbol="BTCUSDT",
        update_id=7,
        event_time_ms=5,
        method="mid",
        price=100.0,
        mid=100.0,
        microprice=100.5,
        impact=None,
        spread=0.2,
        imbalance=0.0,
    )
    assert LineEncoder().fair_price(price) == (
        "fair_price,exchange=binance,symbol=BTCUSDT,method=mid price=100.0,mid=100.0,"
        "microprice=100.5,spread=0.2,imbalance=0.0 5"
    )


def test_fair_price_with_impact_and_sma_makes_two_lines() -> None:
    price = FairPrice(
        exchange="binance",
        symbol="BTCUSDT",
        update_id=7,
        event_time_ms=5,
        method="impact",
        price=100.25,
        mid=100.0,
        microprice=100.5,
        impact=100.25,
        spread=0.2,
        imbalance=0.5,
        sma_fast=1.0,
        sma_slow=2.0,
    )
    first, second = LineEncoder().fair_price(price).split("\n")
    assert first.endswith(",impact=100.25 5")
    assert second == "indicator,exchange=binance,symbol=BTCUSDT sma_fast=1.0,sma_slow=2.0 5"


def test_signal_and_candle_lines() -> None:
    encoder = LineEncoder()
    signal = Signal(
        exchange="binance",
        symbol="BTCUSDT",
        update_id=7,
        event_time_ms=5,
        strategy="sma 20s/60s",
        action="SELL",
        price=1.5,
        sma_fast=1.0,
        sma_slow=2.0,
    )
    assert encoder.signal(signal) == (
        "signal,exchange=binance,symbol=BTCUSDT,strategy=sma\\ 20s/60s "
        'action="SELL",price=1.5,sma_fast=1.0,sma_slow=2.0 5'
    )
    candle = Candle(
        exchange="binance",
        symbol="BTCUSDT",
        start_ms=60_000,
        open=1.0,
        high=3.0,
        low=0.5,
        close=2.0,
        count=42,
    )
    assert encoder.candle(candle) == (
        "candle,exchange=binance,symbol=BTCUSDT,interval=1m "
        "open=1.0,high=3.0,low=0.5,close=2.0,count=42i 60000"
    )


def test_candle_of_the_indicator_interval_and_candle_signal_lines() -> None:
    """Indicators known on a candle are fields of its point (unknown ones left out, the
    state never stored); a signal has the values of its strategy only."""
    encoder = LineEncoder()
    candle = Candle(
        exchange="binance",
        symbol="BTCUSDT",
        interval="4h",
        start_ms=14_400_000,
        open=1.0,
        high=3.0,
        low=0.5,
        close=2.0,
        count=42,
        rsi=55.5,
        bb_upper=2.5,
        bb_middle=2.0,
        bb_lower=1.5,
        state=IndicatorState(
            params="p",
            count=20,
            prev_close=2.0,
            rsi_gain=0.1,
            rsi_loss=0.1,
            atr=0.3,
            warmup=[1.0, 2.0],
            ema_fast=None,
            ema_slow=None,
            macd_count=0,
            macd_signal=0.0,
            window=[2.0] * 20,
        ),
    )
    assert encoder.candle(candle) == (
        "candle,exchange=binance,symbol=BTCUSDT,interval=4h "
        "open=1.0,high=3.0,low=0.5,close=2.0,count=42i,"
        "rsi=55.5,bb_upper=2.5,bb_middle=2.0,bb_lower=1.5 14400000"
    )
    signal = Signal(
        exchange="binance",
        symbol="BTCUSDT",
        update_id=7,
        event_time_ms=5,
        strategy="macd_cross",
        action="BUY",
        price=1.5,
        macd=0.25,
        macd_signal=0.125,
    )
    assert encoder.signal(signal) == (
        "signal,exchange=binance,symbol=BTCUSDT,strategy=macd_cross "
        'action="BUY",price=1.5,macd=0.25,macd_signal=0.125 5'
    )


def test_thinning_keeps_the_first_book_of_each_interval_per_symbol() -> None:
    encoder = LineEncoder(books_interval_ms=1000)
    kept = []
    for symbol in ("A", "B"):
        for t in (10_000, 10_100, 10_999, 11_000, 11_500, 13_200):
            line = encoder.book(_book(event_time_ms=t, update_id=t, symbol=symbol))
            if line is not None:
                kept.append((symbol, line.rsplit(" ", 1)[1], f"update_id={t}i" in line))
    assert kept == [
        ("A", "10000", True),
        ("A", "11000", True),
        ("A", "13000", True),
        ("B", "10000", True),
        ("B", "11000", True),
        ("B", "13000", True),
    ]


def test_thinning_keeps_a_redelivered_kept_book() -> None:
    """A kept book that comes back (its batch was nak'ed) is written again, not thinned."""
    encoder = LineEncoder(books_interval_ms=1000)
    first = _book(event_time_ms=10_000, update_id=1)
    assert encoder.book(first) is not None
    assert encoder.book(_book(event_time_ms=10_100, update_id=2)) is None
    assert encoder.book(first) is not None
    assert encoder.book(_book(event_time_ms=10_200, update_id=3)) is None


def test_thinning_does_not_count_a_refused_book_as_kept() -> None:
    encoder = LineEncoder(books_interval_ms=1000)
    with pytest.raises(InvalidMessageError):
        encoder.book(_book(event_time_ms=10_000, update_id=1, bids=[("x", "1")]))
    assert encoder.book(_book(event_time_ms=10_100, update_id=2)) is not None
