"""Feeds: which symbols to crawl, and with which parameters.

A feed is the desired state of one ``MarketFeed`` object; the operator writes it into the
``feeds`` KV bucket under ``<namespace>.<name>``, and crawlers and converters read the bucket
to apply changes live. A service's own settings give the feeds it runs with no operator.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

import msgspec

from fairprice.common.bus import Bus
from fairprice.common.errors import InvalidMessageError
from fairprice.common.intervals import DEFAULT_INTERVALS, CandleInterval
from fairprice.common.kv import Bucket, snapshot
from fairprice.common.logs import get_logger

__all__ = [
    "STRATEGIES",
    "AlertKind",
    "AlertRule",
    "FairPriceMethod",
    "Feed",
    "Indicators",
    "Strategy",
    "decode_feed",
    "encode_feed",
    "candle_problems",
    "read_feeds",
]

log = get_logger(__name__)

FairPriceMethod = Literal["mid", "microprice", "impact"]
Strategy = Literal["sma_cross", "rsi_reversal", "macd_cross"]
"""``sma_cross``: the fast SMA crossing the slow one (on every price); ``rsi_reversal``: RSI
leaving overbought (SELL) or oversold (BUY); ``macd_cross``: MACD crossing its signal line
(BUY above, SELL below); the last two on closed candles of the indicator interval."""
STRATEGIES: tuple[Strategy, ...] = ("sma_cross", "rsi_reversal", "macd_cross")

_Period = Annotated[int, msgspec.Meta(ge=2, le=1000)]
_Level = Annotated[float, msgspec.Meta(gt=0, lt=100)]


class Indicators(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The indicators on closed candles of ``interval`` and the thresholds of the RSI
    strategy (the CRD schema and the converter's settings check the same bounds and that
    ``macd_fast < macd_slow``, ``rsi_oversold < rsi_overbought``)."""

    interval: CandleInterval = "1m"
    rsi_period: _Period = 14
    macd_fast: _Period = 12
    macd_slow: _Period = 26
    macd_signal: _Period = 9
    bollinger_period: _Period = 20
    bollinger_sd: Annotated[float, msgspec.Meta(gt=0, le=10)] = 2.0
    atr_period: _Period = 14
    rsi_overbought: _Level = 70.0
    rsi_oversold: _Level = 30.0


def candle_problems(intervals: Iterable[str], indicators: Indicators) -> list[str]:
    """What is wrong with a choice of candle intervals and indicators beyond single values
    (the operator, the converter's settings and the CRD schema check the same)."""
    chosen = set(intervals)
    problems = []
    if "1m" not in chosen:
        problems.append("candle intervals must include 1m (longer candles are made from it)")
    if indicators.interval not in chosen:
        problems.append(f"the indicator interval {indicators.interval} is not a candle interval")
    if indicators.macd_fast >= indicators.macd_slow:
        problems.append("macd_fast must be shorter than macd_slow")
    if indicators.rsi_oversold >= indicators.rsi_overbought:
        problems.append("rsi_oversold must be below rsi_overbought")
    return problems


AlertKind = Literal["above", "below", "move", "signal", "stale"]

_REQUIRED: dict[str, tuple[str, ...]] = {
    "above": ("level",),
    "below": ("level",),
    "move": ("percent", "window_seconds"),
    "stale": ("seconds",),
}
"""The fields each kind needs (the CRD's CEL rules say the same)."""


class AlertRule(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    """A market alert of a feed (the MarketFeed's ``spec.alerts[]``, same camelCase names).

    A rule without the fields its kind needs does not decode (``__post_init__``): the CRD
    refuses it first, a hand-written feed in KV is logged and ignored (``read_feeds``)."""

    name: str
    kind: AlertKind
    level: float | None = None
    """above / below: the price level."""
    percent: float | None = None
    """move: the move, in percent, between the window's low and high."""
    window_seconds: int | None = None
    """move: the window, in seconds of event time."""
    seconds: Annotated[int, msgspec.Meta(ge=1, le=86_400)] | None = None
    """stale: the longest gap of event time between two fair prices that does not fire."""
    strategy: Strategy | None = None
    """signal: the strategy whose signals fire it (``None``: any strategy of the feed)."""
    action: Literal["BUY", "SELL"] | None = None
    """signal: the signal that fires it (``None``: either)."""
    severity: Literal["info", "warning", "critical"] = "warning"

    def __post_init__(self) -> None:
        missing = [name for name in _REQUIRED.get(self.kind, ()) if getattr(self, name) is None]
        if missing:
            fields = " and ".join(_CAMEL.get(name, name) for name in missing)
            raise ValueError(f"alert {self.name!r}: {self.kind} alerts need {fields}")


_CAMEL = {"window_seconds": "windowSeconds"}


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
    candle_intervals: list[CandleInterval] = msgspec.field(
        default_factory=lambda: list(DEFAULT_INTERVALS)
    )
    """Always holds ``1m`` (longer candles are made from it) and the indicators' interval."""
    indicators: Indicators = msgspec.field(default_factory=Indicators)
    strategies: list[Strategy] = msgspec.field(default_factory=lambda: ["sma_cross"])
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


async def read_feeds(bus: Bus) -> dict[str, Feed]:
    """Every valid feed in the ``feeds`` bucket by key; an invalid entry is logged and left
    out."""
    feeds: dict[str, Feed] = {}
    for key, value in (await snapshot(bus, Bucket.FEEDS)).items():
        try:
            feeds[key] = decode_feed(value)
        except InvalidMessageError as exc:
            log.warning("ignoring invalid feed", key=key, error=str(exc))
    return feeds
