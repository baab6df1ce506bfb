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

__all__ = [
    "Action",
    "Alert",
    "AlertState",
    "Book",
    "Candle",
    "FairPrice",
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
    action: Action
    price: float
    sma_fast: float
    sma_slow: float


class Candle(msgspec.Struct, frozen=True, kw_only=True):
    """A closed 1-minute OHLC candle of the fair price (``candles.<ex>.<SYM>``)."""

    exchange: str
    symbol: str
    start_ms: int
    """Start of the minute, milliseconds since the Unix epoch (event time)."""
    open: float
    high: float
    low: float
    close: float
    count: int


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """A market alert of a MarketFeed's rule firing or resolving (``alerts.<ex>.<SYM>``), at
    the fair price that made it so."""

    exchange: str
    symbol: str
    rule: str
    """The rule's name, unique within its feed."""
    kind: str
    """``above``, ``below``, ``move`` or ``signal``."""
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
    alerts: list[str] = []
    """The market alerts of the symbol firing at that price (rule names, sorted)."""


Message = Book | FairPrice | Signal | Candle | Alert | Latest
M = TypeVar("M", Book, FairPrice, Signal, Candle, Alert, Latest)

_encoder = msgspec.json.Encoder()
_decoders: dict[type[msgspec.Struct], msgspec.json.Decoder[msgspec.Struct]] = {
    cls: msgspec.json.Decoder(cls) for cls in (Book, FairPrice, Signal, Candle, Alert, Latest)
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
