"""The converter's candle and indicator settings: defaults, and bad values refused at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from fairprice.common.errors import SettingsError
from fairprice.common.feeds import Feed, Indicators
from fairprice.common.intervals import DEFAULT_INTERVALS
from fairprice.common.settings import load_settings
from fairprice.converter.params import params_for
from fairprice.converter.settings import ConverterSection, ConverterSettings


def test_defaults_are_the_feed_defaults() -> None:
    params = params_for(ConverterSection())
    assert params.intervals == DEFAULT_INTERVALS
    assert params.indicators == Indicators()
    assert params.strategies == {"sma_cross"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FAIRPRICE_CONVERTER__CANDLE_INTERVALS": '["5m"]'}, "must include 1m"),
        ({"FAIRPRICE_CONVERTER__CANDLE_INTERVALS": '["1m", "2m"]'}, "converter.candle_intervals"),
        (
            {
                "FAIRPRICE_CONVERTER__INDICATORS__INTERVAL": "4h",
                "FAIRPRICE_CONVERTER__CANDLE_INTERVALS": '["1m"]',
            },
            "not a candle interval",
        ),
        ({"FAIRPRICE_CONVERTER__INDICATORS__MACD_FAST": "30"}, "macd_fast must be shorter"),
        (
            {"FAIRPRICE_CONVERTER__INDICATORS__RSI_PERIOD": "1"},
            "FAIRPRICE_CONVERTER__INDICATORS__RSI_PERIOD",
        ),
        ({"FAIRPRICE_CONVERTER__INDICATORS__RSI_OVERSOLD": "80"}, "rsi_oversold must be below"),
        ({"FAIRPRICE_CONVERTER__INDICATORS__RSI": "14"}, "unknown setting"),
        ({"FAIRPRICE_CONVERTER__STRATEGIES": '["hodl"]'}, "converter.strategies"),
    ],
)
def test_bad_candle_and_indicator_settings_stop_start_up(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    with pytest.raises(SettingsError, match=message):
        load_settings(ConverterSettings, empty)


def test_a_feed_without_1m_or_its_indicator_interval_still_gets_them() -> None:
    """The operator refuses such a feed; one written to KV by hand must not break a symbol."""
    feed = Feed(symbols=["BTCUSDT"], candle_intervals=["4h"], indicators=Indicators(interval="5m"))
    assert params_for(ConverterSection(), feed).intervals == ("1m", "4h", "5m")
