"""A MarketFeed spec -> the Feed written into the feeds bucket, and its key."""

from __future__ import annotations

import pytest

from fairprice.common.feeds import Feed, Indicators, decode_feed, encode_feed
from fairprice.common.kv import feed_key
from fairprice.operator.feed_spec import InvalidSpecError, feed_from_spec


def test_feed_from_spec_maps_every_field() -> None:
    spec = {
        "exchange": "sim",
        "symbols": ["BTCUSDT", "ETHUSDT"],
        "depth": 10,
        "method": "impact",
        "notional": 50000,
        "smaFastSeconds": 30,
        "smaSlowSeconds": 120,
        "candleIntervals": ["1m", "30m", "1d"],
        "indicators": {
            "interval": "30m",
            "rsiPeriod": 7,
            "macdFast": 5,
            "macdSlow": 35,
            "macdSignal": 5,
            "bollingerPeriod": 10,
            "bollingerStdDevs": 2.5,
            "atrPeriod": 21,
            "rsiOverbought": 80,
            "rsiOversold": 20,
        },
        "strategies": ["rsi_reversal", "macd_cross"],
        "enabled": False,
    }
    assert feed_from_spec(spec) == Feed(
        exchange="sim",
        symbols=["BTCUSDT", "ETHUSDT"],
        depth=10,
        method="impact",
        notional=50000.0,
        sma_fast_s=30.0,
        sma_slow_s=120.0,
        candle_intervals=["1m", "30m", "1d"],
        indicators=Indicators(
            interval="30m",
            rsi_period=7,
            macd_fast=5,
            macd_slow=35,
            macd_signal=5,
            bollinger_period=10,
            bollinger_sd=2.5,
            atr_period=21,
            rsi_overbought=80.0,
            rsi_oversold=20.0,
        ),
        strategies=["rsi_reversal", "macd_cross"],
        enabled=False,
    )


def test_feed_from_spec_defaults_what_the_spec_leaves_out() -> None:
    assert feed_from_spec({"symbols": ["BTCUSDT"]}) == Feed(symbols=["BTCUSDT"])


def test_feed_from_spec_keeps_the_first_of_repeated_symbols_in_order() -> None:
    feed = feed_from_spec({"symbols": ["ETHUSDT", "BTCUSDT", "ETHUSDT"]})
    assert feed.symbols == ["ETHUSDT", "BTCUSDT"]


def test_feed_round_trips_through_the_bucket_encoding() -> None:
    feed = feed_from_spec({"symbols": ["BTCUSDT"], "method": "mid"})
    assert decode_feed(encode_feed(feed)) == feed


@pytest.mark.parametrize(
    ("spec", "what"),
    [
        ({"symbols": []}, "no symbols"),
        ({"symbols": ["btcusdt"]}, "bad symbols"),
        ({"symbols": ["BTCUSDT"], "method": "vwap"}, "method"),
        ({"symbols": ["BTCUSDT"], "smaFastSeconds": 60, "smaSlowSeconds": 60}, "shorter"),
        ({"symbols": ["BTCUSDT"], "window": 5}, "window"),
        ({"symbols": ["BTCUSDT"], "candleIntervals": ["5m"]}, "include 1m"),
        ({"symbols": ["BTCUSDT"], "candleIntervals": ["1m", "2m"]}, "candle_intervals"),
        (
            {"symbols": ["BTCUSDT"], "candleIntervals": ["1m"], "indicators": {"interval": "1h"}},
            "not a candle interval",
        ),
        ({"symbols": ["BTCUSDT"], "indicators": {"macdFast": 26}}, "macd_fast must be shorter"),
        ({"symbols": ["BTCUSDT"], "indicators": {"rsiPeriod": 1}}, "rsi_period"),
        ({"symbols": ["BTCUSDT"], "indicators": {"rsiOversold": 75}}, "rsi_oversold"),
        ({"symbols": ["BTCUSDT"], "strategies": ["hodl"]}, "strategies"),
        ({}, "symbols"),
    ],
)
def test_feed_from_spec_rejects_a_spec_that_cannot_be_a_feed(
    spec: dict[str, object], what: str
) -> None:
    with pytest.raises(InvalidSpecError, match=what):
        feed_from_spec(spec)


def test_feed_key_is_namespace_dot_name() -> None:
    assert feed_key("markets", "btc.usdt") == "markets.btc.usdt"
