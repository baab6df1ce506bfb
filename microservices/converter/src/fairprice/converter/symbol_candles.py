"""``SymbolCandles``: one symbol's candles of every interval, its indicators and candle
strategies, and how a takeover resumes them.

Per price: the 1-minute candle (``MinuteCandles``). When a minute closes: the longer intervals
(``PeriodCandles``), and on each closed candle of the indicator interval the indicators
(``CandleIndicators``) and the candle strategies, whose decisions come back with the candle.

**Takeover.** The open minute is rebuilt from BOOKS like the SMA windows. What BOOKS cannot
give (its retention is shorter than a day) comes from CANDLES, which keeps a week:

- the open candle of each longer interval is the aggregate of the period's 1-minute candles
  before the minute of the last published price (``resume(minutes=...)``);
- the indicators and the previous values the strategies compare with are the state and values
  carried by the last candle of the indicator interval (``resume(indicator_candle=...)``).

Closed candles of a replayed book (one the previous owner already published) are not fed to
either: their effect is what was read back. The results are the bytes the previous owner would
have published: aggregation is exact, and the carried floats survive JSON exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import msgspec

from fairprice.common.feeds import Strategy
from fairprice.common.intervals import BASE_INTERVAL, INTERVAL_MS, CandleInterval
from fairprice.common.messages import Action, Candle
from fairprice.converter.candle_indicators import CandleIndicators, IndicatorValues
from fairprice.converter.candles import MinuteCandles, OpenCandle, PeriodCandles
from fairprice.converter.params import Params
from fairprice.converter.strategies import macd_cross, rsi_reversal

__all__ = ["Decision", "ResumeConflictError", "SymbolCandles"]

Decision = tuple[Strategy, Action, Candle]
"""A candle strategy's signal: ``(strategy, action, the candle that triggered it)``."""

_NO_VALUES = IndicatorValues()
_INDICATOR_FIELDS = tuple(field.name for field in dataclasses.fields(IndicatorValues))
"""The indicator fields a ``Candle`` carries too, by the same names."""


class ResumeConflictError(RuntimeError):
    """The last candle in CANDLES is newer than the last price in PRICES: the previous owner
    is still publishing; the takeover is tried again."""


class SymbolCandles:
    def __init__(self, exchange: str, symbol: str, params: Params) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.params = params
        self.minutes = MinuteCandles()
        self.periods = PeriodCandles(params.intervals)
        self.indicators = CandleIndicators(params.indicators)
        self.last_values = _NO_VALUES
        """The indicators of the last candle of the indicator interval."""
        self._interval = params.indicators.interval
        self._indicators_after = -1
        """Candles of the indicator interval starting at or before this are already in it."""
        self._rsi = "rsi_reversal" in params.strategies
        self._macd = "macd_cross" in params.strategies

    def resume(
        self, now_ms: int, minutes: Iterable[Candle], indicator_candle: Candle | None
    ) -> None:
        """Continue after the last published price (event time ``now_ms``) from what CANDLES
        holds: the 1-minute candles of the longest period (in order) and the newest candle of
        the indicator interval."""
        self.periods.seed([_open(c) for c in minutes], now_ms)
        candle = indicator_candle
        if candle is None:
            return
        if candle.start_ms + INTERVAL_MS[self._interval] > now_ms:
            raise ResumeConflictError(
                f"{self.exchange}:{self.symbol}: candle {candle.interval}:{candle.start_ms} "
                f"is newer than the last price ({now_ms})"
            )
        if candle.state is not None and self.indicators.restore(candle.state):
            self.last_values = IndicatorValues(
                **{name: getattr(candle, name) for name in _INDICATOR_FIELDS}
            )
            self._indicators_after = candle.start_ms

    def push(self, time_ms: int, price: float, emit: bool) -> tuple[list[Candle], list[Decision]]:
        """The candles the price at ``time_ms`` closes and what the strategies decided on
        them; nothing when not ``emit`` (a replayed book)."""
        minute = self.minutes.push(time_ms, price)
        if minute is None or not emit:
            return [], []
        closed: list[tuple[CandleInterval, OpenCandle]] = [(BASE_INTERVAL, minute)]
        closed += self.periods.push(minute, time_ms)
        candles: list[Candle] = []
        decisions: list[Decision] = []
        for interval, ohlc in closed:
            if interval == self._interval and ohlc.start_ms > self._indicators_after:
                candle = self._with_indicators(ohlc, decisions)
            else:
                candle = self._candle(interval, ohlc)
            candles.append(candle)
        return candles, decisions

    def _candle(self, interval: CandleInterval, ohlc: OpenCandle) -> Candle:
        return Candle(
            exchange=self.exchange,
            symbol=self.symbol,
            interval=interval,
            start_ms=ohlc.start_ms,
            open=ohlc.open,
            high=ohlc.high,
            low=ohlc.low,
            close=ohlc.close,
            count=ohlc.count,
        )

    def _with_indicators(self, ohlc: OpenCandle, decisions: list[Decision]) -> Candle:
        values = self.indicators.push(ohlc.high, ohlc.low, ohlc.close)
        previous, self.last_values = self.last_values, values
        candle = msgspec.structs.replace(
            self._candle(self._interval, ohlc),
            **dataclasses.asdict(values),
            state=self.indicators.state(),
        )
        params = self.params.indicators
        if self._rsi and (
            action := rsi_reversal(
                previous.rsi, values.rsi, params.rsi_oversold, params.rsi_overbought
            )
        ):
            decisions.append(("rsi_reversal", action, candle))
        if self._macd and (action := macd_cross(previous.macd_hist, values.macd_hist)):
            decisions.append(("macd_cross", action, candle))
        return candle


def _open(candle: Candle) -> OpenCandle:
    return OpenCandle(
        candle.start_ms, candle.open, candle.high, candle.low, candle.close, candle.count
    )
