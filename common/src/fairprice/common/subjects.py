"""Stream names, subjects and message ids: the one module that spells them.

| stream  | subjects                       | message id (JetStream dedup)                    |
|---------|--------------------------------|-------------------------------------------------|
| BOOKS   | ``books.<exchange>.<SYMBOL>``  | ``<exchange>:<SYMBOL>:<final update id>``       |
| PRICES  | ``prices.<exchange>.<SYMBOL>`` | ``<book id>:price``                             |
| SIGNALS | ``signals.<exchange>.<SYMBOL>``| ``<book id>:<strategy>:<action>``               |
| CANDLES | ``candles.<exchange>.<SYMBOL>``| ``<exchange>:<SYMBOL>:candle_1m:<start ms>``    |
| ALERTS  | ``alerts.<exchange>.<SYMBOL>`` | ``<book id>:alert:<rule>:<firing|resolved>``    |

Every id is a pure function of the input, so a replayed or redundant publish of the same
output carries the same id and JetStream's duplicate window drops it.

Dead letters: a service that gives up on a message publishes it unchanged to
``deadletter.<service>.<stream prefix>`` (e.g. ``deadletter.storer.books``), captured by the
``DEADLETTER`` stream, with id ``deadletter:<service>:<STREAM>:<stream sequence>``, so a
redelivered poison message is dead-lettered once.
"""

from __future__ import annotations

import enum

__all__ = [
    "DEADLETTER_STREAM",
    "DEADLETTER_WILDCARD",
    "Stream",
    "alert_msg_id",
    "alerts_subject",
    "book_msg_id",
    "books_subject",
    "candle_msg_id",
    "candles_subject",
    "deadletter_msg_id",
    "deadletter_subject",
    "parse_subject",
    "price_msg_id",
    "prices_subject",
    "signal_msg_id",
    "signals_subject",
]


class Stream(enum.StrEnum):
    """The JetStream streams; the value is the stream name, ``prefix`` its subject root."""

    BOOKS = "BOOKS"
    PRICES = "PRICES"
    SIGNALS = "SIGNALS"
    CANDLES = "CANDLES"
    ALERTS = "ALERTS"

    @property
    def prefix(self) -> str:
        return self.value.lower()

    @property
    def wildcard(self) -> str:
        """The subject filter that captures the whole stream, e.g. ``books.>``."""
        return f"{self.prefix}.>"

    def subject(self, exchange: str, symbol: str) -> str:
        return f"{self.prefix}.{exchange}.{symbol}"


def books_subject(exchange: str, symbol: str) -> str:
    return Stream.BOOKS.subject(exchange, symbol)


def prices_subject(exchange: str, symbol: str) -> str:
    return Stream.PRICES.subject(exchange, symbol)


def signals_subject(exchange: str, symbol: str) -> str:
    return Stream.SIGNALS.subject(exchange, symbol)


def candles_subject(exchange: str, symbol: str) -> str:
    return Stream.CANDLES.subject(exchange, symbol)


def alerts_subject(exchange: str, symbol: str) -> str:
    return Stream.ALERTS.subject(exchange, symbol)


DEADLETTER_STREAM = "DEADLETTER"
"""The stream that keeps every service's dead letters (subjects ``DEADLETTER_WILDCARD``)."""
DEADLETTER_WILDCARD = "deadletter.>"


def deadletter_subject(service: str, stream: Stream) -> str:
    """Where ``service`` puts the messages of ``stream`` it cannot process."""
    return f"deadletter.{service}.{stream.prefix}"


def parse_subject(subject: str) -> tuple[Stream, str, str]:
    """Split ``books.binance.BTCUSDT`` into ``(Stream.BOOKS, "binance", "BTCUSDT")``."""
    prefix, exchange, symbol = subject.split(".", 2)
    return Stream(prefix.upper()), exchange, symbol


def book_msg_id(exchange: str, symbol: str, update_id: int) -> str:
    return f"{exchange}:{symbol}:{update_id}"


def price_msg_id(book_id: str) -> str:
    return f"{book_id}:price"


def signal_msg_id(book_id: str, strategy: str, action: str) -> str:
    return f"{book_id}:{strategy}:{action}"


def candle_msg_id(exchange: str, symbol: str, start_ms: int) -> str:
    return f"{exchange}:{symbol}:candle_1m:{start_ms}"


def alert_msg_id(book_id: str, rule: str, state: str) -> str:
    """The id of a market alert's firing or resolution: one per rule and event."""
    return f"{book_id}:alert:{rule}:{state}"


def deadletter_msg_id(service: str, stream: Stream, stream_seq: int) -> str:
    return f"deadletter:{service}:{stream.value}:{stream_seq}"
