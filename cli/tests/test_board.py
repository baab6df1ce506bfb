"""`fairprice top`'s board fed by real NATS messages."""

from __future__ import annotations

import io

import pytest
from nats.aio.msg import Msg
from rich.console import Console

from fairprice.cli.__main__ import _parser, main
from fairprice.cli.board import Board, seed_alerts
from fairprice.common.bus import Bus, ensure_streams
from fairprice.common.messages import Alert, Book, Candle, FairPrice, IndicatorState, Signal, encode
from fairprice.common.settings import StreamsSettings
from fairprice.common.subjects import (
    alerts_subject,
    books_subject,
    candles_subject,
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


def _candle(interval: str, rsi: float | None, with_state: bool) -> Candle:
    return Candle(
        exchange="sim",
        symbol="BTCUSDT",
        interval=interval,  # type: ignore[arg-type]
        start_ms=NOW_MS - 60_000,
        open=1.0,
        high=2.0,
        low=0.5,
        close=1.5,
        count=3,
        rsi=rsi,
        state=STATE if with_state else None,
    )


STATE = IndicatorState(
    params="p",
    count=20,
    prev_close=1.5,
    rsi_gain=0.1,
    rsi_loss=0.1,
    atr=0.3,
    warmup=[],
    ema_fast=None,
    ema_slow=None,
    macd_count=0,
    macd_signal=0.0,
    window=[],
)


def test_board_shows_the_chosen_indicator_of_the_indicator_interval() -> None:
    """``--indicator rsi``: the column holds the RSI of the last candle that carries the
    indicators (not that of a longer candle without them), with its interval."""
    board = Board("rsi")
    board.apply(candles_subject("sim", "BTCUSDT", "1m"), encode(_candle("1m", 61.25, True)))
    board.apply(candles_subject("sim", "BTCUSDT", "5m"), encode(_candle("5m", None, False)))
    header, row = (
        next(line for line in _render(board).splitlines() if word in line)
        for word in ("exchange", "BTCUSDT")
    )
    assert "rsi" in header
    assert "61.25 (1m)" in row
    assert "rsi" not in next(line for line in _render(Board()).splitlines() if "symbol" in line)


def test_top_takes_an_indicator_column_as_the_readme_shows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``fairprice top --indicator rsi`` parses (the real entry point's parser); an unknown
    indicator is refused with the choices listed."""
    args = _parser().parse_args(["top", "--sort", "lag", "--indicator", "macd_hist"])
    assert (args.command, args.sort, args.indicator) == ("top", "lag", "macd_hist")
    assert _parser().parse_args(["top"]).indicator is None
    with pytest.raises(SystemExit) as exited:
        main(["top", "--indicator", "stochastic"])
    assert exited.value.code == 2
    assert "invalid choice: 'stochastic'" in capsys.readouterr().err


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


async def test_board_lists_alerts_that_fired_before_it_started(bus: Bus) -> None:
    """``fairprice top`` started after an alert fired still lists it (read back from ALERTS),
    and not one whose resolution is in the stream too."""
    await ensure_streams(bus.jsm, StreamsSettings())
    subject = alerts_subject("sim", "BNBUSDT")
    for rule, state in (("fast-move", "firing"), ("buy", "firing"), ("buy", "resolved")):
        event = Alert(
            exchange="sim",
            symbol="BNBUSDT",
            rule=rule,
            kind="move",
            severity="warning",
            state=state,  # type: ignore[arg-type]
            update_id=9,
            event_time_ms=NOW_MS - 5_000,
            price=0.0006,
            summary=f"BNBUSDT {rule}",
        )
        await bus.js.publish(subject, encode(event))
    board = Board()
    await seed_alerts(bus, board)
    assert list(board.firing) == [("sim", "BNBUSDT", "fast-move")]
    assert "1 alert(s) firing" in _render(board)


async def test_seeding_without_an_alerts_stream_lists_nothing(bus: Bus) -> None:
    board = Board()
    await seed_alerts(bus, board)
    assert not board.firing
