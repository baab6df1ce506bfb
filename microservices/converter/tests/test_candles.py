"""Candles of every interval: the pipeline's against a direct grouping of its prices."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fairprice.common.intervals import INTERVAL_MS, INTERVALS, CandleInterval
from fairprice.common.messages import Book, Candle, FairPrice, decode
from fairprice.common.subjects import Stream
from fairprice.converter.candles import MinuteCandles, OpenCandle, PeriodCandles
from fairprice.converter.fair_price import Skip
from fairprice.converter.params import Params
from fairprice.converter.symbol_pipeline import SymbolPipeline

EVERY = Params(intervals=INTERVALS)


def test_candles_close_by_event_time_minute() -> None:
    candles = MinuteCandles()
    base = 1_700_000_040_000  # a minute boundary
    assert base % 60_000 == 0
    assert candles.push(base + 1_000, 10.0) is None
    assert candles.push(base + 20_000, 12.0) is None
    assert candles.push(base + 40_000, 9.0) is None
    assert candles.push(base + 59_999, 11.0) is None
    closed = candles.push(base + 60_000, 13.0)
    assert closed is not None
    assert (closed.start_ms, closed.open, closed.high, closed.low, closed.close, closed.count) == (
        base,
        10.0,
        12.0,
        9.0,
        11.0,
        4,
    )
    # a gap of several minutes closes the open minute, and no empty candles are made up
    closed = candles.push(base + 5 * 60_000 + 5, 14.0)
    assert closed is not None
    assert (closed.start_ms, closed.open, closed.close, closed.count) == (
        base + 60_000,
        13.0,
        13.0,
        1,
    )


def _reference(prices: list[tuple[int, float]], interval: CandleInterval) -> list[tuple]:  # type: ignore[type-arg]
    """OHLC per period straight from the prices (every period but the last, still open)."""
    length = INTERVAL_MS[interval]
    groups: dict[int, list[float]] = {}
    for time_ms, price in prices:
        groups.setdefault(time_ms - time_ms % length, []).append(price)
    starts = sorted(groups)[:-1]
    return [
        (s, groups[s][0], max(groups[s]), min(groups[s]), groups[s][-1], len(groups[s]))
        for s in starts
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_interval_equals_the_prices_grouped_by_period(
    make_long_books: Callable[..., list[Book]], seed: int
) -> None:
    """Each interval's candles, aggregated from minutes, are exactly the OHLC and count of the
    published prices of each period (event time), closed by the first price of a later one."""
    books = make_long_books("AAAUSDT", 600, seed=seed)
    pipeline = SymbolPipeline("sim", "AAAUSDT", EVERY)
    prices: list[tuple[int, float]] = []
    candles: dict[str, list[tuple]] = {i: [] for i in INTERVALS}  # type: ignore[type-arg]
    for book in books:
        result = pipeline.process(book)
        if isinstance(result, Skip):
            continue
        for stream, subject, payload, msg_id in result:
            if stream is Stream.PRICES:
                price = decode(payload, FairPrice)
                prices.append((price.event_time_ms, price.price))
            elif stream is Stream.CANDLES:
                c = decode(payload, Candle)
                assert subject == f"candles.sim.AAAUSDT.{c.interval}"
                assert msg_id == f"sim:AAAUSDT:candle_{c.interval}:{c.start_ms}"
                candles[c.interval].append((c.start_ms, c.open, c.high, c.low, c.close, c.count))
    for interval in INTERVALS:
        assert candles[interval] == _reference(prices, interval), interval
        assert candles[interval], f"no {interval} candle closed: the series is too short"


def test_period_candles_seeded_from_minutes_equal_the_live_ones() -> None:
    """What a takeover rebuilds from CANDLES' minutes is what the live builder holds."""
    live = PeriodCandles(INTERVALS)
    base = 1_700_006_400_000 - 3 * 60_000  # three minutes before a UTC midnight
    minutes = [
        OpenCandle(base + i * 60_000, 10.0 + i, 12.0 + i, 9.0 - i, 11.0 + i, 1 + i)
        for i in range(40)
    ]
    for minute in minutes:
        now = minute.start_ms + 60_000 + 7
        live.push(minute, now)
        seeded = PeriodCandles(INTERVALS)
        seeded.seed(minutes, now)
        assert seeded.open == live.open
