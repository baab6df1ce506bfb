"""Candles of every interval from the fair price, by exchange event time: pure and exact.

**1 minute.** ``MinuteCandles``: OHLC of the fair price per event-time minute, closed and
returned when the first price of a later minute arrives.

**Longer intervals.** ``PeriodCandles``: every longer interval (5m ... 1d) is a whole number of
minutes from the epoch, so each of its boundaries is a minute boundary, and its candle is the
aggregate of its closed minutes: the first open, the highest high, the lowest low, the last
close, the summed count. No arithmetic touches a price, so the result is the candle the prices
themselves would give, and it closes at the same book (the first price of a later period is
the first of a later minute too).

Why from minutes: a replica taking a symbol over rebuilds the open 4-hour or 1-day candle from
the period's 1-minute candles in CANDLES (kept 7 days) when BOOKS no longer holds the period's
books (``seed``). The open minute itself it rebuilds from BOOKS, as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from fairprice.common.intervals import BASE_INTERVAL, INTERVAL_MS, INTERVALS, CandleInterval

__all__ = ["MinuteCandles", "OpenCandle", "PeriodCandles"]

_MINUTE_MS = INTERVAL_MS[BASE_INTERVAL]


@dataclass(slots=True)
class OpenCandle:
    start_ms: int
    open: float
    high: float
    low: float
    close: float
    count: int

    def merge(self, later: OpenCandle) -> None:
        """Extend by ``later``, a candle that follows this one."""
        if later.high > self.high:
            self.high = later.high
        if later.low < self.low:
            self.low = later.low
        self.close = later.close
        self.count += later.count


class MinuteCandles:
    """1-minute OHLC by event time; ``push`` returns the candle a new minute closed."""

    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current: OpenCandle | None = None

    def push(self, time_ms: int, price: float) -> OpenCandle | None:
        start = time_ms - time_ms % _MINUTE_MS
        candle = self.current
        if candle is not None and candle.start_ms == start:
            if price > candle.high:
                candle.high = price
            elif price < candle.low:
                candle.low = price
            candle.close = price
            candle.count += 1
            return None
        self.current = OpenCandle(start, price, price, price, price, 1)
        # A price from an earlier minute than the open candle cannot happen: event times of
        # one symbol are non-decreasing, and the pipeline drops out-of-order books first.
        return candle


class PeriodCandles:
    """The candles of ``intervals`` longer than a minute, aggregated from closed minutes."""

    __slots__ = ("_lengths", "open")

    def __init__(self, intervals: Iterable[CandleInterval]) -> None:
        chosen = set(intervals)
        self._lengths = [
            (interval, INTERVAL_MS[interval])
            for interval in INTERVALS
            if interval in chosen and interval != BASE_INTERVAL
        ]
        self.open: dict[CandleInterval, OpenCandle | None] = {i: None for i, _ in self._lengths}

    def push(self, minute: OpenCandle, now_ms: int) -> list[tuple[CandleInterval, OpenCandle]]:
        """Add the closed ``minute``; return the candles that the price at ``now_ms`` (the one
        that closed the minute) closes, shortest interval first."""
        closed: list[tuple[CandleInterval, OpenCandle]] = []
        for interval, length in self._lengths:
            start = minute.start_ms - minute.start_ms % length
            candle = self.open[interval]
            if candle is None or candle.start_ms != start:
                # (A candle of an earlier period was closed by the price that closed the
                # minute before: after every push, what is open is the period of now.)
                candle = replace(minute, start_ms=start)
            else:
                candle.merge(minute)
            if now_ms - now_ms % length != start:
                closed.append((interval, candle))
                candle = None
            self.open[interval] = candle
        return closed

    def seed(self, minutes: Sequence[OpenCandle], now_ms: int) -> None:
        """Set the open candles to what a converter that lived through ``minutes`` (the closed
        1-minute candles, in order) has at the price of ``now_ms``: the minutes of each
        interval's current period before the minute of ``now_ms``."""
        current_minute = now_ms - now_ms % _MINUTE_MS
        for interval, length in self._lengths:
            start = now_ms - now_ms % length
            candle: OpenCandle | None = None
            for minute in minutes:
                if not start <= minute.start_ms < current_minute:
                    continue
                if candle is None:
                    candle = replace(minute, start_ms=start)
                else:
                    candle.merge(minute)
            self.open[interval] = candle
