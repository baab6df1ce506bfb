"""Feeds: which symbols to crawl, and with which parameters.

A feed is the desired state of one ``MarketFeed`` object; the operator writes it into the
``feeds`` KV bucket under ``<namespace>.<name>``, and crawlers and converters read the bucket
to apply changes live. A service's own settings give the feeds it runs with no operator.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from nats.js.kv import KeyValue

from fairprice.common.errors import InvalidMessageError
from fairprice.common.kv import snapshot
from fairprice.common.logs import get_logger

__all__ = [
    "AlertKind",
    "AlertRule",
    "FairPriceMethod",
    "Feed",
    "decode_feed",
    "encode_feed",
    "read_feeds",
]

log = get_logger(__name__)

FairPriceMethod = Literal["mid", "microprice", "impact"]
AlertKind = Literal["above", "below", "move", "signal"]


class AlertRule(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    """A market alert of a feed (the MarketFeed's ``spec.alerts[]``, same camelCase names)."""

    name: str
    kind: AlertKind
    level: float | None = None
    """above / below: the price level."""
    percent: float | None = None
    """move: the move, in percent, between the window's low and high."""
    window_seconds: int | None = None
    """move: the window, in seconds of event time."""
    action: Literal["BUY", "SELL"] | None = None
    """signal: the signal that fires it (``None``: either)."""
    severity: Literal["info", "warning", "critical"] = "warning"


class Feed(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    exchange: str = "binance"
    symbols: list[str]
    depth: int = 20
    """Levels per side in published books."""
    method: FairPriceMethod = "microprice"
    notional: float = 10_000.0
    """Quote-currency notional of the impact price."""
    sma_fast_s: float = 20.0
    sma_slow_s: float = 60.0
    enabled: bool = True
    alerts: tuple[AlertRule, ...] = ()
    """Market alerts, evaluated by the converter on every fair price (docs/alerts.md)."""


_decoder = msgspec.json.Decoder(Feed)


def encode_feed(feed: Feed) -> bytes:
    return msgspec.json.encode(feed)


def decode_feed(data: bytes) -> Feed:
    try:
        return _decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidMessageError(f"invalid feed: {exc}") from exc


async def read_feeds(kv: KeyValue) -> dict[str, Feed]:
    """Every valid feed in the bucket by key; an invalid entry is logged and left out."""
    feeds: dict[str, Feed] = {}
    for key, value in (await snapshot(kv)).items():
        try:
            feeds[key] = decode_feed(value)
        except InvalidMessageError as exc:
            log.warning("ignoring invalid feed", key=key, error=str(exc))
    return feeds
