"""The candle strategies on hand-made sequences."""

from __future__ import annotations

from fairprice.converter.strategies import macd_cross, rsi_reversal


def test_rsi_reversal_signals_on_leaving_a_zone_not_entering_it() -> None:
    rsi = [50.0, 65.0, 71.0, 75.0, 69.0, 60.0, 35.0, 29.0, 25.0, 30.0, 31.0, None, 50.0]
    actions = [rsi_reversal(a, b, 30.0, 70.0) for a, b in zip(rsi, rsi[1:], strict=False)]
    assert actions == [None, None, None, "SELL", None, None, None, None, "BUY", None, None, None]


def test_macd_cross_signals_when_the_histogram_changes_sign() -> None:
    hist = [None, -0.5, -0.1, 0.2, 0.3, 0.0, -0.4, -0.2, 0.0, 0.1]
    actions = [macd_cross(a, b) for a, b in zip(hist, hist[1:], strict=False)]
    assert actions == [None, None, "BUY", None, None, "SELL", None, None, "BUY"]
