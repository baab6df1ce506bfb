"""`fairprice demo`'s feed: the converter's own pricing plus the demo's market alerts."""

from __future__ import annotations

import dataclasses

from fairprice.cli.local import DEMO_ALERTS, demo_feed
from fairprice.common.feeds import decode_feed, encode_feed
from fairprice.common.settings import load_settings
from fairprice.converter.params import params_for
from fairprice.converter.settings import ConverterSettings


def test_demo_feed_prices_as_the_converter_would_and_carries_the_alerts() -> None:
    feed = decode_feed(encode_feed(demo_feed(["BTCUSDT", "ETHUSDT"])))
    assert feed.exchange == "sim" and feed.symbols == ["BTCUSDT", "ETHUSDT"]
    assert feed.alerts == DEMO_ALERTS
    section = load_settings(ConverterSettings).converter
    with_feed = params_for(section, feed)
    assert dataclasses.replace(with_feed, alerts=()) == params_for(section)
    assert with_feed.alerts == DEMO_ALERTS
