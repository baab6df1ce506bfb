"""RSI, MACD, Bollinger Bands and ATR on closed candles, incremental and resumable.

The conventions are TA-Lib's (the tests compare every value with TA-Lib's to 1e-9 relative):

- **RSI** (Wilder): the first value after ``rsi_period + 1`` closes, from the mean gain and
  loss of the first ``rsi_period`` changes; then each average is ``(avg * (n - 1) + x) / n``.
  RSI = 100 * gain / (gain + loss); 50 when nothing moved (TA-Lib says 0, which would read as
  oversold on a flat market).
- **MACD**: exponential averages with ``k = 2 / (n + 1)``; the slow one seeded with the mean
  of the first ``macd_slow`` closes, the fast one, at the same candle, with the mean of the
  last ``macd_fast`` of them; the signal line seeded with the mean of the first ``macd_signal``
  MACD values. All three are published from that candle on (as TA-Lib does).
- **Bollinger Bands**: the mean of the last ``bollinger_period`` closes plus and minus
  ``bollinger_sd`` population standard deviations (two-pass, ``math.fsum``).
- **ATR** (Wilder): true range ``max(high - low, |high - prev close|, |low - prev close|)``
  from the second candle; the first value is the mean of the first ``atr_period`` ranges.

Why not a library: talipp and TA-Lib compute the same numbers, but neither lets a replica start
from a state it reads back: an exponential average depends on every candle before it, and a
replica taking a symbol over has neither that history nor the library's internals. Here the
whole state is the ``IndicatorState`` each candle of the indicator interval carries; it is a
few floats that JSON carries exactly (shortest round-trip repr), so a replica that resumes
from it computes the very bytes the previous owner would have. This runs once per closed
candle, not per book: its cost does not show per book.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fairprice.common.feeds import Indicators
from fairprice.common.messages import IndicatorState

__all__ = ["CandleIndicators", "IndicatorValues", "params_key"]


@dataclass(frozen=True, slots=True)
class IndicatorValues:
    """The indicators after one candle; ``None`` until there are enough candles."""

    rsi: float | None = None
    macd: float | None = None
    macd_signal: float | None = None
    macd_hist: float | None = None
    bb_upper: float | None = None
    bb_middle: float | None = None
    bb_lower: float | None = None
    atr: float | None = None


def params_key(params: Indicators) -> str:
    """What of ``params`` the state depends on (the interval is in the subject, the RSI
    thresholds only steer a strategy)."""
    return (
        f"rsi={params.rsi_period};macd={params.macd_fast},{params.macd_slow},"
        f"{params.macd_signal};bb={params.bollinger_period},{params.bollinger_sd!r};"
        f"atr={params.atr_period}"
    )


class CandleIndicators:
    """``push(high, low, close)`` per closed candle; ``state()`` to carry, ``restore`` to go
    on from a carried state (a state of other parameters is ignored: they start over)."""

    def __init__(self, params: Indicators) -> None:
        self.params = params
        self._key = params_key(params)
        self._fast_k = 2.0 / (params.macd_fast + 1)
        self._slow_k = 2.0 / (params.macd_slow + 1)
        self._signal_k = 2.0 / (params.macd_signal + 1)
        self.count = 0
        self.prev_close: float | None = None
        self.rsi_gain = 0.0
        self.rsi_loss = 0.0
        self.atr = 0.0
        self.warmup: list[float] = []
        self.ema_fast: float | None = None
        self.ema_slow: float | None = None
        self.macd_count = 0
        self.macd_signal = 0.0
        self.window: list[float] = []

    def restore(self, state: IndicatorState) -> bool:
        """Go on from ``state``; ``False`` (and nothing changed) if it is of other params."""
        if state.params != self._key:
            return False
        self.count = state.count
        self.prev_close = state.prev_close
        self.rsi_gain, self.rsi_loss, self.atr = state.rsi_gain, state.rsi_loss, state.atr
        self.warmup = list(state.warmup)
        self.ema_fast, self.ema_slow = state.ema_fast, state.ema_slow
        self.macd_count, self.macd_signal = state.macd_count, state.macd_signal
        self.window = list(state.window)
        return True

    def state(self) -> IndicatorState:
        return IndicatorState(
            params=self._key,
            count=self.count,
            prev_close=self.prev_close,
            rsi_gain=self.rsi_gain,
            rsi_loss=self.rsi_loss,
            atr=self.atr,
            warmup=list(self.warmup),
            ema_fast=self.ema_fast,
            ema_slow=self.ema_slow,
            macd_count=self.macd_count,
            macd_signal=self.macd_signal,
            window=list(self.window),
        )

    def push(self, high: float, low: float, close: float) -> IndicatorValues:
        """The indicators after a closed candle."""
        p = self.params
        self.count += 1
        prev = self.prev_close
        self.prev_close = close
        rsi = atr = None
        if prev is not None:
            rsi = self._rsi(close - prev, p.rsi_period)
            true_range = max(high - low, abs(high - prev), abs(low - prev))
            atr = self._atr(true_range, p.atr_period)
        macd, signal = self._macd(close, p)
        upper = middle = lower = None
        window = self.window
        window.append(close)
        if len(window) > p.bollinger_period:
            del window[0]
        if len(window) == p.bollinger_period:
            middle = math.fsum(window) / p.bollinger_period
            sd = math.sqrt(math.fsum((x - middle) ** 2 for x in window) / p.bollinger_period)
            upper, lower = middle + p.bollinger_sd * sd, middle - p.bollinger_sd * sd
        return IndicatorValues(
            rsi=rsi,
            macd=macd if signal is not None else None,
            macd_signal=signal,
            macd_hist=macd - signal if macd is not None and signal is not None else None,
            bb_upper=upper,
            bb_middle=middle,
            bb_lower=lower,
            atr=atr,
        )

    def _rsi(self, change: float, n: int) -> float | None:
        gain, loss = (change, 0.0) if change > 0 else (0.0, -change)
        changes = self.count - 1
        if changes < n:
            self.rsi_gain += gain
            self.rsi_loss += loss
            return None
        if changes == n:
            self.rsi_gain = (self.rsi_gain + gain) / n
            self.rsi_loss = (self.rsi_loss + loss) / n
        else:
            self.rsi_gain = (self.rsi_gain * (n - 1) + gain) / n
            self.rsi_loss = (self.rsi_loss * (n - 1) + loss) / n
        total = self.rsi_gain + self.rsi_loss
        return 100.0 * (self.rsi_gain / total) if total > 0.0 else 50.0

    def _atr(self, true_range: float, n: int) -> float | None:
        ranges = self.count - 1
        if ranges < n:
            self.atr += true_range
            return None
        if ranges == n:
            self.atr = (self.atr + true_range) / n
        else:
            self.atr = (self.atr * (n - 1) + true_range) / n
        return self.atr

    def _macd(self, close: float, p: Indicators) -> tuple[float | None, float | None]:
        if self.ema_slow is None or self.ema_fast is None:
            self.warmup.append(close)
            if len(self.warmup) < p.macd_slow:
                return None, None
            self.ema_slow = math.fsum(self.warmup) / p.macd_slow
            self.ema_fast = math.fsum(self.warmup[-p.macd_fast :]) / p.macd_fast
            self.warmup = []
        else:
            self.ema_fast = (close - self.ema_fast) * self._fast_k + self.ema_fast
            self.ema_slow = (close - self.ema_slow) * self._slow_k + self.ema_slow
        macd = self.ema_fast - self.ema_slow
        self.macd_count += 1
        if self.macd_count < p.macd_signal:
            self.macd_signal += macd
            return macd, None
        if self.macd_count == p.macd_signal:
            self.macd_signal = (self.macd_signal + macd) / p.macd_signal
        else:
            self.macd_signal = (macd - self.macd_signal) * self._signal_k + self.macd_signal
        return macd, self.macd_signal
