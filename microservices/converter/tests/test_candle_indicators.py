"""RSI, MACD, Bollinger Bands and ATR against TA-Lib (a test-only reference), and resuming
from the state a candle carries."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np
import pytest
import talib

from fairprice.common.feeds import Indicators
from fairprice.common.intervals import INTERVALS
from fairprice.common.messages import Book, Candle, IndicatorState, decode, encode
from fairprice.common.subjects import Stream
from fairprice.converter.candle_indicators import CandleIndicators, IndicatorValues
from fairprice.converter.fair_price import Skip
from fairprice.converter.params import Params
from fairprice.converter.symbol_pipeline import SymbolPipeline

FIELDS = tuple(IndicatorValues.__dataclass_fields__)
OTHER = Indicators(
    rsi_period=7,
    macd_fast=5,
    macd_slow=13,
    macd_signal=4,
    bollinger_period=10,
    bollinger_sd=1.5,
    atr_period=5,
)


def _series(n: int, seed: int) -> tuple[list[float], list[float], list[float]]:
    """Highs, lows and closes of a random walk around 100."""
    rng = np.random.default_rng(seed)
    close = 100 + np.cumsum(rng.normal(0, 0.4, n))
    high = close + rng.uniform(0, 0.5, n)
    low = close - rng.uniform(0, 0.5, n)
    return list(map(float, high)), list(map(float, low)), list(map(float, close))


def _talib(
    params: Indicators, high: list[float], low: list[float], close: list[float]
) -> dict[str, Any]:
    h, lo, c = np.array(high), np.array(low), np.array(close)
    macd, signal, hist = talib.MACD(c, params.macd_fast, params.macd_slow, params.macd_signal)
    upper, middle, lower = talib.BBANDS(
        c,
        params.bollinger_period,
        params.bollinger_sd,
        params.bollinger_sd,
        talib.MA_Type.SMA,  # type: ignore[attr-defined]
    )
    return {
        "rsi": talib.RSI(c, params.rsi_period),
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": hist,
        "bb_upper": upper,
        "bb_middle": middle,
        "bb_lower": lower,
        "atr": talib.ATR(h, lo, c, params.atr_period),
    }


def _assert_equal_to_talib(
    params: Indicators,
    high: list[float],
    low: list[float],
    close: list[float],
    values: list[IndicatorValues],
) -> None:
    reference = _talib(params, high, low, close)
    for name in FIELDS:
        for i, value in enumerate(values):
            expected = float(reference[name][i])
            got = getattr(value, name)
            if math.isnan(expected):
                assert got is None, (name, i)
            else:
                assert got is not None, (name, i)
                assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), (name, i)


@pytest.mark.parametrize("params", [Indicators(), OTHER], ids=["defaults", "other"])
@pytest.mark.parametrize("seed", [1, 2])
def test_indicators_equal_talib_on_a_simulated_series(params: Indicators, seed: int) -> None:
    high, low, close = _series(400, seed)
    indicators = CandleIndicators(params)
    values = [indicators.push(h, lo, c) for h, lo, c in zip(high, low, close, strict=True)]
    _assert_equal_to_talib(params, high, low, close, values)
    assert all(getattr(values[-1], name) is not None for name in FIELDS)


def test_indicators_on_the_pipeline_candles_equal_talib(
    make_long_books: Callable[..., list[Book]],
) -> None:
    """The 1-minute candles of a simulated session, as published: every indicator on them
    equals TA-Lib's over the published OHLC."""
    pipeline = SymbolPipeline("sim", "AAAUSDT", Params(intervals=INTERVALS, indicators=OTHER))
    candles = []
    for book in make_long_books("AAAUSDT", 600, seed=5):
        result = pipeline.process(book)
        if not isinstance(result, Skip):
            candles += [decode(p, Candle) for s, _, p, _ in result if s is Stream.CANDLES]
    minutes = [c for c in candles if c.interval == "1m"]
    assert len(minutes) > 60
    assert all(c.state is None and c.rsi is None for c in candles if c.interval != "1m")
    values = [IndicatorValues(**{name: getattr(c, name) for name in FIELDS}) for c in minutes]
    _assert_equal_to_talib(
        OTHER,
        [c.high for c in minutes],
        [c.low for c in minutes],
        [c.close for c in minutes],
        values,
    )


@pytest.mark.parametrize("cut", [0, 1, 5, 13, 20, 33, 34, 100, 399])
def test_indicators_resumed_from_a_carried_state_continue_byte_identically(cut: int) -> None:
    """The state after candle ``cut``, through JSON (as it rides on a candle), gives a fresh
    object the very values of the one that went on."""
    high, low, close = _series(400, 3)
    lived = CandleIndicators(Indicators())
    for h, lo, c in zip(high[:cut], low[:cut], close[:cut], strict=True):
        lived.push(h, lo, c)
    carried = msgspec.json.decode(msgspec.json.encode(lived.state()), type=IndicatorState)
    resumed = CandleIndicators(Indicators())
    assert resumed.restore(carried)
    for h, lo, c in zip(high[cut:], low[cut:], close[cut:], strict=True):
        assert resumed.push(h, lo, c) == lived.push(h, lo, c)
    assert encode_state(resumed) == encode_state(lived)


def encode_state(indicators: CandleIndicators) -> bytes:
    return msgspec.json.encode(indicators.state())


def test_a_state_of_other_parameters_is_not_restored() -> None:
    high, low, close = _series(50, 4)
    lived = CandleIndicators(Indicators())
    for h, lo, c in zip(high, low, close, strict=True):
        lived.push(h, lo, c)
    other = CandleIndicators(OTHER)
    assert not other.restore(lived.state())
    assert other.count == 0


def test_flat_prices_give_a_neutral_rsi() -> None:
    indicators = CandleIndicators(Indicators(rsi_period=3))
    values = [indicators.push(1.0, 1.0, 1.0) for _ in range(6)]
    assert [v.rsi for v in values] == [None, None, None, 50.0, 50.0, 50.0]


def test_candle_carries_values_and_state_on_the_wire() -> None:
    state = CandleIndicators(Indicators()).state()
    candle = Candle(
        exchange="sim",
        symbol="AAA",
        interval="5m",
        start_ms=0,
        open=1.0,
        high=2.0,
        low=0.5,
        close=1.5,
        count=3,
        rsi=55.5,
        state=state,
    )
    assert decode(encode(candle), Candle) == candle
