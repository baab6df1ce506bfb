"""Stream names, subjects and message ids: the one module that spells them.

| stream  | subjects                                | message id (JetStream dedup)                 |
|---------|-----------------------------------------|----------------------------------------------|
| BOOKS   | ``books.<exchange>.<SYMBOL>``           | ``<exchange>:<SYMBOL>:<final update id>``    |
|         | stored: ``books.<partition>.<exchange>.<SYMBOL>``                                     |
| PRICES  | ``prices.<exchange>.<SYMBOL>``          | ``<book id>:price``                          |
| SIGNALS | ``signals.<exchange>.<SYMBOL>``         | ``<book id>:<strategy>:<action>``            |
| CANDLES | ``candles.<exchange>.<SYMBOL>.<iv>``    | ``<exchange>:<SYMBOL>:candle_<iv>:<start>``  |
| ALERTS  | ``alerts.<exchange>.<SYMBOL>``          | ``<book id>:alert:<rule>:<firing|resolved>`` |

(``<iv>``: the candle interval, ``1m`` ... ``1d``; ``<start>``: its start, ms.)

Crawlers publish books to ``books.<exchange>.<SYMBOL>``; the BOOKS stream's subject transform
(``books_partition_transform``) stores each under ``books.<partition>.<exchange>.<SYMBOL>``, the
partition computed by the server (``partition(n, exchange, symbol)``, a stable hash), so that a
converter replica can read only the partitions it owns (``books_partition_filter``).

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
    "books_partition",
    "books_partition_filter",
    "books_partition_transform",
    "books_subject",
    "books_symbol_filter",
    "candle_msg_id",
    "candles_subject",
    "deadletter_msg_id",
    "deadletter_subject",
    "parse_subject",
    "price_msg_id",
    "prices_subject",
    "signal_msg_id",
    "signals_subject",
    "storer_deliveries_subject",
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
    """Where a crawler publishes a book (stored with its partition: see the module doc)."""
    return Stream.BOOKS.subject(exchange, symbol)


def books_partition_transform(partitions: int) -> tuple[str, str]:
    """The BOOKS stream's subject transform ``(source, destination)``: the partition token."""
    return (
        "books.*.*",
        f"books.{{{{partition({partitions},1,2)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}",
    )


def books_partition_filter(partition: int) -> str:
    """The stored books of one partition."""
    return f"books.{partition}.>"


def books_symbol_filter(exchange: str, symbol: str) -> str:
    """The stored books of one symbol, whatever its partition."""
    return f"books.*.{exchange}.{symbol}"


def prices_subject(exchange: str, symbol: str) -> str:
    return Stream.PRICES.subject(exchange, symbol)


def signals_subject(exchange: str, symbol: str) -> str:
    return Stream.SIGNALS.subject(exchange, symbol)


def candles_subject(exchange: str, symbol: str, interval: str) -> str:
    """``candles.<exchange>.<SYMBOL>.<interval>``: one subject per interval, so the newest
    candle of an interval (or its history) is read by subject."""
    return f"{Stream.CANDLES.subject(exchange, symbol)}.{interval}"


def alerts_subject(exchange: str, symbol: str) -> str:
    return Stream.ALERTS.subject(exchange, symbol)


def storer_deliveries_subject(stream: str, consumer: str) -> str:
    """Core NATS (no stream): where the storer replicas sharing the durable ``consumer`` of
    ``stream`` announce what each was delivered (the storer's ``retention``)."""
    return f"storer.deliveries.{stream}.{consumer}"


DEADLETTER_STREAM = "DEADLETTER"
"""The stream that keeps every service's dead letters (subjects ``DEADLETTER_WILDCARD``)."""
DEADLETTER_WILDCARD = "deadletter.>"


def deadletter_subject(service: str, stream: Stream) -> str:
    """Where ``service`` puts the messages of ``stream`` it cannot process."""
    return f"deadletter.{service}.{stream.prefix}"


def parse_subject(subject: str) -> tuple[Stream, str, str]:
    """Split a subject into ``(stream, exchange, symbol)``: ``books.binance.BTCUSDT``, a stored
    book's ``books.7.binance.BTCUSDT`` (its partition left out) and a candle's
    ``candles.binance.BTCUSDT.4h`` (its interval left out) all give ``"binance", "BTCUSDT"``."""
    tokens = subject.split(".")
    stream = Stream(tokens[0].upper())
    if stream is Stream.BOOKS and len(tokens) == 4:  # books.<partition>.<exchange>.<SYMBOL>
        del tokens[1]
    exchange, symbol = tokens[1], tokens[2]
    return stream, exchange, symbol


def books_partition(stored_subject: str) -> int:
    """The partition of a stored book, from ``books.<partition>.<exchange>.<SYMBOL>``."""
    return int(stored_subject.split(".", 2)[1])


def book_msg_id(exchange: str, symbol: str, update_id: int) -> str:
    return f"{exchange}:{symbol}:{update_id}"


def price_msg_id(book_id: str) -> str:
    return f"{book_id}:price"


def signal_msg_id(book_id: str, strategy: str, action: str) -> str:
    return f"{book_id}:{strategy}:{action}"


def candle_msg_id(exchange: str, symbol: str, interval: str, start_ms: int) -> str:
    return f"{exchange}:{symbol}:candle_{interval}:{start_ms}"


def alert_msg_id(book_id: str, rule: str, state: str) -> str:
    """The id of a market alert's firing or resolution: one per rule and event."""
    return f"{book_id}:alert:{rule}:{state}"


def deadletter_msg_id(service: str, stream: Stream, stream_seq: int) -> str:
    return f"deadletter:{service}:{stream.value}:{stream_seq}"
