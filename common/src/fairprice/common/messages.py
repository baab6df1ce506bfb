"""Wire schemas of the messages between services (documented in docs/messages.md).

msgspec Structs encoded as JSON objects: msgspec validates while it decodes, at a fraction of
pydantic's cost (bench/messages.py measures it), so the same schema serves the hot path and the
validation of what comes from outside. Prices and quantities of a book stay the exchange's own
decimal strings, so no precision is lost between the exchange and InfluxDB; derived values (fair
price, SMA, candles) are floats.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import msgspec

from fairprice.common.errors import InvalidMessageError
from fairprice.common.intervals import CandleInterval

__all__ = [
    "Action",
    "Alert",
    "AlertState",
    "Book",
    "BookHead",
    "Candle",
    "FairPrice",
    "IndicatorState",
    "Latest",
    "Level",
    "Message",
    "Signal",
    "decode",
    "encode",
]

Level = tuple[str, str]
"""One price level: ``(price, quantity)`` exactly as the exchange wrote them."""

Action = Literal["BUY", "SELL"]
AlertState = Literal["firing", "resolved"]


class Book(msgspec.Struct, frozen=True, kw_only=True):
    """The top-N order book after one applied exchange event (subject ``books.<ex>.<SYM>``)."""

    exchange: str
    symbol: str
    update_id: int
    """The event's final update id (Binance ``u``): strictly increasing per symbol."""
    first_update_id: int
    """The event's first update id (Binance ``U``)."""
    event_time_ms: int
    """Exchange event time, milliseconds since the Unix epoch."""
    receive_time_ms: int
    """Local time the crawler received the event, milliseconds since the Unix epoch."""
    bids: list[Level]
    """Best (highest) first."""
    asks: list[Level]
    """Best (lowest) first."""
    bids_known: int | None = None
    """Bid levels the crawler knows to be right, counted from the best: all of ``bids`` and
    possibly more. Fewer ``bids`` than the published depth and ``bids_known == len(bids)``:
    the book may hold more levels that its snapshot's window did not cover (docs/crawler.md).
    ``None``: sent by a crawler that predates the field."""
    asks_known: int | None = None
    """The same for the asks."""


class BookHead(msgspec.Struct, frozen=True, kw_only=True):
    """What names a ``Book`` and places it in time, decoded without its levels (unknown
    fields are skipped): for a reader that may leave the book out after seeing this much (the
    storer's thinning), at about a third of the cost of decoding the whole book
    (``bench/messages.py``)."""

    exchange: str
    symbol: str
    update_id: int
    event_time_ms: int


class FairPrice(msgspec.Struct, frozen=True, kw_only=True):
    """The fair price of one book and the SMA indicator values (``prices.<ex>.<SYM>``)."""

    exchange: str
    symbol: str
    update_id: int
    event_time_ms: int
    method: str
    """The method whose value is ``price``: ``mid``, ``microprice`` or ``impact``."""
    price: float
    mid: float
    microprice: float
    impact: float | None
    """Impact price for the configured notional; ``None`` when the book is too thin for it."""
    spread: float
    imbalance: float
    """(bid qty - ask qty) / (bid qty + ask qty) at the best level, in [-1, 1]."""
    sma_fast: float | None = None
    sma_slow: float | None = None
    trend: int = 0
    """The SMA crossover state after this price: 1 fast above slow by more than the minimum
    gap, -1 below, 0 undecided yet. A converter taking a symbol over resumes from it."""


class Signal(msgspec.Struct, frozen=True, kw_only=True):
    """A trading signal (``signals.<ex>.<SYM>``)."""

    exchange: str
    symbol: str
    update_id: int
    event_time_ms: int
    strategy: str
    """``sma_cross``, ``rsi_reversal`` or ``macd_cross``."""
    action: Action
    price: float
    """The fair price of the triggering book."""
    sma_fast: float | None = None
    """The SMA values at the signal (``sma_cross``)."""
    sma_slow: float | None = None
    rsi: float | None = None
    """The RSI of the closed candle that triggered an ``rsi_reversal``."""
    macd: float | None = None
    """MACD and its signal line of the closed candle that triggered a ``macd_cross``."""
    macd_signal: float | None = None


class IndicatorState(msgspec.Struct, frozen=True, kw_only=True):
    """What the indicators need to go on after the candle carrying it, exactly as the
    converter that computed it had it: a replica taking the symbol over resumes from the last
    candle of the indicator interval rather than from history no stream keeps.

    RSI and ATR use Wilder's smoothing and MACD exponential averages: each value depends on
    every candle before it, so the state rides on the candle like the SMA ``trend`` on a price.
    """

    params: str
    """The indicator parameters this state was computed with; other parameters start over."""
    count: int
    """Candles fed so far."""
    prev_close: float | None
    rsi_gain: float
    """Sum of the first ``rsi_period`` gains, then Wilder's average gain."""
    rsi_loss: float
    atr: float
    """Sum of the first ``atr_period`` true ranges, then the ATR."""
    warmup: list[float]
    """The first closes, until both MACD averages are seeded (then empty)."""
    ema_fast: float | None
    ema_slow: float | None
    macd_count: int
    """MACD values so far."""
    macd_signal: float
    """Sum of the first ``macd_signal`` MACD values, then the signal line."""
    window: list[float]
    """The last ``bollinger_period`` closes, oldest first."""


class Candle(msgspec.Struct, frozen=True, kw_only=True):
    """A closed OHLC candle of the fair price (``candles.<ex>.<SYM>.<interval>``); a candle of
    the feed's indicator interval carries the indicators after it (``None`` until enough
    candles) and their state."""

    exchange: str
    symbol: str
    interval: CandleInterval = "1m"
    """``1m``, ``5m``, ``15m``, ``30m``, ``1h``, ``4h`` or ``1d``."""
    start_ms: int
    """Start of the period, milliseconds since the Unix epoch (event time)."""
    open: float
    high: float
    low: float
    close: float
    count: int
    """Prices in the period."""
    rsi: float | None = None
    macd: float | None = None
    macd_signal: float | None = None
    macd_hist: float | None = None
    bb_upper: float | None = None
    bb_middle: float | None = None
    bb_lower: float | None = None
    atr: float | None = None
    state: IndicatorState | None = None


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """A market alert of a MarketFeed's rule firing or resolving (``alerts.<ex>.<SYM>``), at
    the fair price that made it so."""

    exchange: str
    symbol: str
    rule: str
    """The rule's name, unique within its feed."""
    kind: str
    """``above``, ``below``, ``move``, ``signal`` or ``stale``."""
    severity: str
    state: AlertState
    update_id: int
    """The book whose fair price fired or resolved it."""
    event_time_ms: int
    price: float
    summary: str
    """What happened, for people (Alertmanager's ``summary`` annotation)."""


class Latest(msgspec.Struct, frozen=True, kw_only=True):
    """The latest fair price and signal of a symbol: KV bucket ``latest``, key
    ``<exchange>.<SYMBOL>``, written by the converter at most about once a second per symbol
    (the operator shows it in the MarketFeed status)."""

    exchange: str
    symbol: str
    update_id: int
    event_time_ms: int
    method: str
    price: float
    sma_fast: float | None
    sma_slow: float | None
    signal: Action | None = None
    """The last signal the writing replica published, if any."""
    signal_time_ms: int | None = None
    """Event time of that signal."""
    mid: float | None = None
    """(best bid + best ask) / 2 of the book (``None`` from a converter older than the field)."""
    spread: float | None = None
    """Best ask - best bid of the book (``None`` likewise)."""
    alerts: list[str] = []
    """The market alerts of the symbol firing at that price (rule names, sorted)."""


Message = Book | FairPrice | Signal | Candle | Alert | Latest
M = TypeVar("M", Book, BookHead, FairPrice, Signal, Candle, Alert, Latest)

_encoder = msgspec.json.Encoder()
_decoders: dict[type[msgspec.Struct], msgspec.json.Decoder[msgspec.Struct]] = {
    cls: msgspec.json.Decoder(cls)
    for cls in (Book, BookHead, FairPrice, Signal, Candle, Alert, Latest)
}


def encode(message: Message) -> bytes:
    """JSON bytes of ``message``; deterministic (field order fixed, shortest float repr)."""
    return _encoder.encode(message)


def decode(data: bytes | str, kind: type[M]) -> M:
    """Decode and validate ``data`` as ``kind``; raise ``InvalidMessageError`` saying why not."""
    try:
        result = _decoders[kind].decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidMessageError(f"invalid {kind.__name__} message: {exc}") from exc
    assert isinstance(result, kind)
    return result
