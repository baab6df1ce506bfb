from __future__ import annotations

import pytest

from fairprice.common.errors import InvalidMessageError
from fairprice.common.messages import Book, Candle, FairPrice, Signal, decode, encode
from fairprice.common.subjects import (
    Stream,
    book_msg_id,
    books_partition,
    books_partition_filter,
    books_subject,
    books_symbol_filter,
    candle_msg_id,
    parse_subject,
    price_msg_id,
    signal_msg_id,
)

BOOK = Book(
    exchange="binance",
    symbol="NKNUSDT",
    update_id=499869753,
    first_update_id=499869750,
    event_time_ms=1633998480123,
    receive_time_ms=1633998480150,
    bids=[("0.35280000", "1043.00000000"), ("0.35270000", "10.5")],
    asks=[("0.35300000", "2.00000000")],
)


@pytest.mark.parametrize(
    "message",
    [
        BOOK,
        FairPrice(
            exchange="binance",
            symbol="NKNUSDT",
            update_id=1,
            event_time_ms=2,
            method="mid",
            price=0.3529,
            mid=0.3529,
            microprice=0.35309,
            impact=None,
            spread=0.0002,
            imbalance=0.99,
            sma_fast=0.35,
            sma_slow=None,
        ),
        Signal(
            exchange="binance",
            symbol="NKNUSDT",
            update_id=1,
            event_time_ms=2,
            strategy="sma_cross",
            action="BUY",
            price=0.3529,
            sma_fast=0.36,
            sma_slow=0.35,
        ),
        Candle(
            exchange="binance",
            symbol="NKNUSDT",
            start_ms=60_000,
            open=1.0,
            high=2.0,
            low=0.5,
            close=1.5,
            count=42,
        ),
    ],
)
def test_messages_round_trip(message: Book | FairPrice | Signal | Candle) -> None:
    data = encode(message)
    assert decode(data, type(message)) == message
    assert encode(decode(data, type(message))) == data  # byte-identical re-encoding


def test_messages_keep_exchange_decimal_strings() -> None:
    data = encode(BOOK)
    assert b'["0.35280000","1043.00000000"]' in data


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"exchange":"binance"}', "missing required field `symbol`"),
        (b"not json", "malformed"),
        (encode(BOOK).replace(b'"update_id":499869753', b'"update_id":"x"'), "$.update_id"),
        (encode(BOOK).replace(b'["0.35300000","2.00000000"]', b'["0.353"]'), "$.asks[0]"),
    ],
)
def test_messages_malformed_payload_raises_clear_error(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessageError, match="invalid Book message") as info:
        decode(payload, Book)
    assert reason in str(info.value)


def test_messages_signal_action_is_checked() -> None:
    data = encode(
        Signal(
            exchange="e",
            symbol="S",
            update_id=1,
            event_time_ms=1,
            strategy="sma_cross",
            action="BUY",
            price=1.0,
            sma_fast=1.0,
            sma_slow=1.0,
        )
    ).replace(b'"BUY"', b'"HOLD"')
    with pytest.raises(InvalidMessageError, match=r"Invalid enum value .HOLD. - at `\$.action`"):
        decode(data, Signal)


def test_subjects_and_ids() -> None:
    assert books_subject("binance", "BTCUSDT") == "books.binance.BTCUSDT"
    assert Stream.SIGNALS.subject("sim", "ETHBTC") == "signals.sim.ETHBTC"
    assert Stream.PRICES.wildcard == "prices.>"
    assert parse_subject("candles.sim.ETHBTC") == (Stream.CANDLES, "sim", "ETHBTC")
    assert parse_subject("books.7.sim.ETHBTC") == (Stream.BOOKS, "sim", "ETHBTC")  # as stored
    assert books_partition("books.7.sim.ETHBTC") == 7
    assert books_partition_filter(7) == "books.7.>"
    assert books_symbol_filter("sim", "ETHBTC") == "books.*.sim.ETHBTC"
    book_id = book_msg_id("binance", "BTCUSDT", 42)
    assert book_id == "binance:BTCUSDT:42"
    assert price_msg_id(book_id) == "binance:BTCUSDT:42:price"
    assert signal_msg_id(book_id, "sma_cross", "SELL") == "binance:BTCUSDT:42:sma_cross:SELL"
    assert candle_msg_id("binance", "BTCUSDT", 60_000) == "binance:BTCUSDT:candle_1m:60000"
