"""`fairprice top`'s board fed by real NATS messages."""

from __future__ import annotations

import io

from nats.aio.msg import Msg
from rich.console import Console

from fairprice.cli.board import Board
from fairprice.common.bus import Bus
from fairprice.common.messages import Alert, Book, FairPrice, Signal, encode
from fairprice.common.subjects import (
    alerts_subject,
    books_subject,
    prices_subject,
    signals_subject,
)
from fairprice.common.testing import eventually

NOW_MS = 1_700_000_000_000


def _render(board: Board, **kwargs: object) -> str:
    console = Console(file=io.StringIO(), width=200)
    console.print(board.table(now=NOW_MS / 1000 + 1, **kwargs))  # type: ignore[arg-type]
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


async def test_board_shows_book_price_and_signal_from_nats(bus: Bus) -> None:
    board = Board()

    async def on_msg(msg: Msg) -> None:
        board.apply(msg.subject, msg.data, now=NOW_MS / 1000 + 0.25)

    await bus.nc.subscribe(">", cb=on_msg)
    book = Book(
        exchange="sim",
        symbol="BTCUSDT",
        update_id=7,
        first_update_id=5,
        event_time_ms=NOW_MS,
        receive_time_ms=NOW_MS + 3,
        bids=[("100.5", "2")],
        asks=[("100.7", "1")],
    )
    price = FairPrice(
        exchange="sim",
        symbol="BTCUSDT",
        update_id=7,
        event_time_ms=NOW_MS,
        method="microprice",
        price=100.6333,
        mid=100.6,
        microprice=100.6333,
        impact=None,
        spread=0.2,
        imbalance=0.33,
        sma_fast=100.61,
        sma_slow=100.55,
    )
    signal = Signal(
        exchange="sim",
        symbol="BTCUSDT",
        update_id=7,
        event_time_ms=NOW_MS,
        strategy="sma_cross",
        action="BUY",
        price=100.6333,
        sma_fast=100.61,
        sma_slow=100.55,
    )
    await bus.nc.publish(books_subject("sim", "BTCUSDT"), encode(book))
    await bus.nc.publish(prices_subject("sim", "BTCUSDT"), encode(price))
    await bus.nc.publish(signals_subject("sim", "BTCUSDT"), encode(signal))
    await bus.nc.publish(books_subject("sim", "ETHUSDT"), b"{not json")
    await eventually(lambda: board.invalid == 1 and board.rows[("sim", "BTCUSDT")].signal == "BUY")

    text = _render(board)
    row = next(line for line in text.splitlines() if "BTCUSDT" in line)
    for cell in ("100.5", "100.7", "100.6333", "100.61", "100.55", "BUY", "1s", "250"):
        assert cell in row, (cell, row)


def test_board_sorts_by_lag() -> None:
    board = Board()
    for symbol, lag_ms in (("AAA", 10), ("BBB", 500), ("CCC", 50)):
        book = Book(
            exchange="sim",
            symbol=symbol,
            update_id=1,
            first_update_id=1,
            event_time_ms=NOW_MS - lag_ms,
            receive_time_ms=NOW_MS,
            bids=[("1", "1")],
            asks=[("2", "1")],
        )
        board.apply(books_subject("sim", symbol), encode(book), now=NOW_MS / 1000)
    text = _render(board, sort="lag")
    order = [s for line in text.splitlines() for s in ("AAA", "BBB", "CCC") if s in line]
    assert order == ["BBB", "CCC", "AAA"]


async def test_board_footer_lists_firing_alerts_until_they_resolve(bus: Bus) -> None:
    board = Board()

    async def on_msg(msg: Msg) -> None:
        board.apply(msg.subject, msg.data, now=NOW_MS / 1000)

    await bus.nc.subscribe(">", cb=on_msg)

    def alert(rule: str, state: str) -> Alert:
        return Alert(
            exchange="sim",
            symbol="BTCUSDT",
            rule=rule,
            kind="above",
            severity="critical",
            state=state,  # type: ignore[arg-type]
            update_id=7,
            event_time_ms=NOW_MS - 11_000,
            price=101.0,
            summary="BTCUSDT 101 above 100",
        )

    subject = alerts_subject("sim", "BTCUSDT")
    await bus.nc.publish(subject, encode(alert("btc-above", "firing")))
    await bus.nc.publish(subject, encode(alert("btc-high", "firing")))
    await eventually(lambda: len(board.firing) == 2)
    text = _render(board)
    assert "2 alert(s) firing" in text
    assert "sim BTCUSDT btc-above (critical, 12s): BTCUSDT 101 above 100" in text
    await bus.nc.publish(subject, encode(alert("btc-above", "resolved")))
    await eventually(lambda: len(board.firing) == 1)
    assert "btc-above" not in _render(board) and "1 alert(s) firing" in _render(board)
    await bus.nc.publish(subject, encode(alert("btc-high", "resolved")))
    await eventually(lambda: not board.firing)
    assert "firing" not in _render(board)
