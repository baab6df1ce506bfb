"""SMA windows, crossovers and candles on hand-computed sequences."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from fairprice.converter.indicators import Crossover, SmaWindow


def test_sma_window_is_a_time_window_hand_computed() -> None:
    window = SmaWindow(span_ms=3000)
    assert window.push(0, 1.0) == 1.0
    assert window.push(1000, 2.0) == 1.5
    assert window.push(2000, 3.0) == 2.0
    # (0, 3000]: the price at 0 leaves the window exactly 3 s later
    assert window.push(3000, 6.0) == pytest.approx((2 + 3 + 6) / 3)
    assert len(window) == 3
    assert window.push(3500, 1.0) == pytest.approx((2 + 3 + 6 + 1) / 4)


def test_sma_window_gap_in_time_drops_everything_older() -> None:
    window = SmaWindow(span_ms=3000)
    for t, price in ((0, 10.0), (500, 20.0), (1000, 30.0)):
        window.push(t, price)
    # 10 s of silence: only the new price is inside (t - 3 s, t]
    assert window.push(11_000, 5.0) == 5.0
    assert len(window) == 1
    assert window.push(12_000, 7.0) == 6.0
    # a gap just shorter than the span keeps the last price
    assert window.push(14_999, 9.0) == pytest.approx((7.0 + 9.0) / 2)


def test_sma_window_same_time_prices_all_count() -> None:
    window = SmaWindow(span_ms=1000)
    window.push(100, 1.0)
    window.push(100, 2.0)
    assert window.push(100, 6.0) == 3.0


def test_sma_window_is_exact_whatever_the_path() -> None:
    """The SMA equals the correctly rounded mean of the window, however long the history:
    a window rebuilt from the last span gives the very same float as one that lived it all."""
    rng = random.Random(7)
    long = SmaWindow(span_ms=5_000)
    prices = [
        (t * 100, rng.uniform(0.0001, 70_000.0) * 10 ** rng.randint(-3, 3)) for t in range(5_000)
    ]
    for t, price in prices:
        lived = long.push(t, price)
    tail = [p for t, p in prices if t > prices[-1][0] - 5_000]
    rebuilt = SmaWindow(span_ms=5_000)
    for t, price in prices[-len(tail) :]:
        fresh = rebuilt.push(t, price)
    assert lived == fresh
    assert lived == float(sum(map(Fraction, tail)) / len(tail))  # the correctly rounded mean


def test_crossover_buy_and_sell_on_hand_computed_sequence() -> None:
    cross = Crossover(min_gap=0.0)
    # fast below slow: the first decision is a trend, not a crossing
    assert cross.update(9.0, 10.0) is None
    assert cross.trend == -1
    assert cross.update(9.5, 10.0) is None
    assert cross.update(10.5, 10.0) == "BUY"
    assert cross.update(11.0, 10.0) is None
    assert cross.update(9.0, 10.0) == "SELL"
    assert cross.update(8.0, 10.0) is None


def test_crossover_minimum_gap_stops_flapping() -> None:
    cross = Crossover(min_gap=0.01)  # 1 % of slow: a band of 0.1 around 10
    assert cross.update(9.5, 10.0) is None
    # wiggles inside the band do nothing
    for fast in (10.05, 9.95, 10.09, 9.92, 10.1):
        assert cross.update(fast, 10.0) is None
    assert cross.trend == -1
    assert cross.update(10.11, 10.0) == "BUY"
    for fast in (9.95, 10.05, 9.91):
        assert cross.update(fast, 10.0) is None
    assert cross.update(9.89, 10.0) == "SELL"


def test_crossover_without_gap_would_flap() -> None:
    """The same wiggle with no gap gives a signal on every crossing."""
    cross = Crossover(min_gap=0.0)
    cross.update(9.5, 10.0)
    actions = [cross.update(fast, 10.0) for fast in (10.05, 9.95, 10.09, 9.92)]
    assert actions == ["BUY", "SELL", "BUY", "SELL"]


def test_crossover_resumed_trend_continues_the_same_way() -> None:
    cross = Crossover(min_gap=0.0, trend=1)
    assert cross.update(9.0, 10.0) == "SELL"
