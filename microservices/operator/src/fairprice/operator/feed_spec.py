"""A MarketFeed's spec as the ``Feed`` the crawlers and converters read, and its KV key.

The key is ``<namespace>.<name>``: a namespace is a DNS label (no dots), so the first dot
always separates the two even when the object's name has dots of its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from fairprice.common.feeds import Feed, candle_problems

__all__ = ["InvalidSpecError", "feed_from_spec"]


class InvalidSpecError(ValueError):
    """The spec cannot be a feed (the CRD schema normally rejects it first)."""


_SYMBOL = re.compile(r"^[A-Z0-9]{2,20}$")
_CAMEL_TO_FEED = {
    "smaFastSeconds": "sma_fast_s",
    "smaSlowSeconds": "sma_slow_s",
    "candleIntervals": "candle_intervals",
}
_CAMEL_TO_INDICATORS = {
    "rsiPeriod": "rsi_period",
    "macdFast": "macd_fast",
    "macdSlow": "macd_slow",
    "macdSignal": "macd_signal",
    "bollingerPeriod": "bollinger_period",
    "bollingerStdDevs": "bollinger_sd",
    "atrPeriod": "atr_period",
    "rsiOverbought": "rsi_overbought",
    "rsiOversold": "rsi_oversold",
}


def feed_from_spec(spec: Mapping[str, Any]) -> Feed:
    """The ``Feed`` of a MarketFeed spec; fields the spec leaves out take the Feed's defaults.

    Symbols are de-duplicated in their given order (the first one is the printer columns').
    """
    fields = {_CAMEL_TO_FEED.get(key, key): value for key, value in spec.items()}
    if isinstance(fields.get("indicators"), Mapping):
        fields["indicators"] = {
            _CAMEL_TO_INDICATORS.get(key, key): value for key, value in fields["indicators"].items()
        }
    if isinstance(fields.get("symbols"), list):
        fields["symbols"] = list(dict.fromkeys(fields["symbols"]))
    try:
        feed = msgspec.convert(fields, Feed)
    except msgspec.ValidationError as exc:
        raise InvalidSpecError(f"invalid MarketFeed spec: {exc}") from exc
    if not feed.symbols:
        raise InvalidSpecError("invalid MarketFeed spec: no symbols")
    bad = [symbol for symbol in feed.symbols if not _SYMBOL.match(symbol)]
    if bad:
        raise InvalidSpecError(f"invalid MarketFeed spec: bad symbols {bad}")
    if feed.sma_fast_s >= feed.sma_slow_s:
        raise InvalidSpecError(
            "invalid MarketFeed spec: smaFastSeconds must be shorter than smaSlowSeconds"
        )
    problems = candle_problems(feed.candle_intervals, feed.indicators)
    if problems:
        raise InvalidSpecError(f"invalid MarketFeed spec: {'; '.join(problems)}")
    return feed
