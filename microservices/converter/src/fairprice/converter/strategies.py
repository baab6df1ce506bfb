"""The candle strategies beside the SMA crossover: pure rules on two consecutive candles.

- ``rsi_reversal``: SELL when the RSI leaves overbought (it was above ``rsi_overbought`` and is
  no longer), BUY when it leaves oversold (below ``rsi_oversold``, then no longer). Entering a
  zone says nothing; leaving it is the turn.
- ``macd_cross``: BUY when MACD rises above its signal line (the histogram goes from <= 0 to
  > 0), SELL when it falls below (from >= 0 to < 0).

Both need the previous candle's values, which the last candle in CANDLES carries, so a replica
taking a symbol over decides the next candle exactly as the previous owner would have.
"""

from __future__ import annotations

from fairprice.common.messages import Action

__all__ = ["macd_cross", "rsi_reversal"]


def rsi_reversal(
    previous: float | None, current: float | None, oversold: float, overbought: float
) -> Action | None:
    if previous is None or current is None:
        return None
    if previous > overbought >= current:
        return "SELL"
    if previous < oversold <= current:
        return "BUY"
    return None


def macd_cross(previous_hist: float | None, current_hist: float | None) -> Action | None:
    if previous_hist is None or current_hist is None:
        return None
    if previous_hist <= 0.0 < current_hist:
        return "BUY"
    if previous_hist >= 0.0 > current_hist:
        return "SELL"
    return None
