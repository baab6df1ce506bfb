"""`fairprice top`: a live terminal board of every symbol flowing through NATS.

It subscribes (core NATS, no consumer state) to ``books.>``, ``prices.>``, ``signals.>`` and
``alerts.>`` and keeps one row per symbol: best bid/ask, fair price, both SMAs, the last signal
and its age, updates per second and lag (now minus the exchange event time of the last book);
a footer lists the market alerts firing: at start those of the last day read back from the
ALERTS stream (``seed_alerts``: an alert that fired before top started shows at once), then
each event as it comes (a resolution takes one off). With an ``indicator`` (``--indicator
rsi``, ...) it also follows ``candles.>`` and shows that indicator of the symbol's last
candle that carries it (the feed's indicator interval, named in the cell). ``q`` quits (as in
top, htop and less), and so do Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import sys
import termios
import time
import tty
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from nats.aio.msg import Msg
from rich.console import Console
from rich.live import Live
from rich.table import Table

from fairprice.common.broker_errors import broker_errors
from fairprice.common.bus import Bus, connect_bus
from fairprice.common.errors import InvalidMessageError, NotFoundError
from fairprice.common.lifecycle import wait_or_stop
from fairprice.common.messages import Alert, Book, Candle, FairPrice, Signal, decode
from fairprice.common.settings import ServiceSettings
from fairprice.common.subjects import Stream, parse_subject
from fairprice.common.tail import StreamTail

__all__ = ["ALERTS_LOOKBACK_S", "Board", "IndicatorColumn", "SortKey", "run_top", "seed_alerts"]

ALERTS_LOOKBACK_S = 86_400.0
"""How far back top reads ALERTS at start (a firing alert's hold at Alertmanager, 24 h)."""

SortKey = Literal["symbol", "rate", "lag", "spread", "signal"]
IndicatorColumn = Literal[
    "rsi", "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle", "bb_lower", "atr"
]
_RATE_WINDOW_S = 5.0


@dataclass
class Row:
    exchange: str
    symbol: str
    bid: str = ""
    ask: str = ""
    fair: float | None = None
    method: str = ""
    sma_fast: float | None = None
    sma_slow: float | None = None
    spread: float | None = None
    signal: str = ""
    signal_at: float | None = None
    lag_ms: float | None = None
    indicator: str = ""
    """The chosen indicator of the last candle carrying it, with its interval."""
    arrivals: deque[float] = field(default_factory=deque)

    def rate(self, now: float) -> float:
        while self.arrivals and self.arrivals[0] < now - _RATE_WINDOW_S:
            self.arrivals.popleft()
        return len(self.arrivals) / _RATE_WINDOW_S


class Board:
    """The board's state; ``apply`` takes a NATS message, ``table`` renders it."""

    def __init__(self, indicator: IndicatorColumn | None = None) -> None:
        self.rows: dict[tuple[str, str], Row] = {}
        self.firing: dict[tuple[str, str, str], Alert] = {}
        """Market alerts firing, by (exchange, symbol, rule)."""
        self.invalid = 0
        self.indicator = indicator

    def _row(self, exchange: str, symbol: str) -> Row:
        key = (exchange, symbol)
        if key not in self.rows:
            self.rows[key] = Row(exchange, symbol)
        return self.rows[key]

    def apply(self, subject: str, data: bytes, now: float | None = None) -> None:
        now = time.time() if now is None else now
        try:
            stream, exchange, symbol = parse_subject(subject)
            row = self._row(exchange, symbol)
            if stream is Stream.BOOKS:
                book = decode(data, Book)
                row.bid = book.bids[0][0] if book.bids else ""
                row.ask = book.asks[0][0] if book.asks else ""
                row.lag_ms = now * 1000 - book.event_time_ms
                row.arrivals.append(now)
            elif stream is Stream.PRICES:
                price = decode(data, FairPrice)
                row.fair, row.method, row.spread = price.price, price.method, price.spread
                row.sma_fast, row.sma_slow = price.sma_fast, price.sma_slow
            elif stream is Stream.SIGNALS:
                signal = decode(data, Signal)
                row.signal, row.signal_at = signal.action, signal.event_time_ms / 1000
            elif stream is Stream.CANDLES and self.indicator is not None:
                candle = decode(data, Candle)
                value = getattr(candle, self.indicator)
                if candle.state is not None and value is not None:
                    row.indicator = f"{value:.6g} ({candle.interval})"
            elif stream is Stream.ALERTS:
                alert = decode(data, Alert)
                key = (exchange, symbol, alert.rule)
                if alert.state == "firing":
                    self.firing[key] = alert
                else:
                    self.firing.pop(key, None)
        except (InvalidMessageError, ValueError):
            self.invalid += 1

    def table(self, sort: SortKey = "symbol", limit: int = 50, now: float | None = None) -> Table:
        now = time.time() if now is None else now
        rows = list(self.rows.values())
        keys = {
            "symbol": lambda r: (r.exchange, r.symbol),
            "rate": lambda r: -r.rate(now),
            "lag": lambda r: -(r.lag_ms or 0.0),
            "spread": lambda r: -(r.spread or 0.0),
            "signal": lambda r: -(r.signal_at or 0.0),
        }
        rows.sort(key=keys[sort])
        table = Table(
            title=f"fairprice top: {len(self.rows)} symbols, sorted by {sort}",
            caption=self._firing_footer(now),
            caption_justify="left",
        )
        names = ["exchange", "symbol", "bid", "ask", "fair", "sma fast", "sma slow"]
        if self.indicator is not None:
            names.append(self.indicator.replace("_", " "))
        names += ["signal", "age", "upd/s", "lag ms"]
        for name in names:
            table.add_column(name, justify="left" if name in ("exchange", "symbol") else "right")
        for r in rows[:limit]:
            age = f"{now - r.signal_at:.0f}s" if r.signal_at else ""
            colour = {"BUY": "green", "SELL": "red"}.get(r.signal, "")
            cells = [r.exchange, r.symbol, r.bid, r.ask]
            cells += [_num(r.fair), _num(r.sma_fast), _num(r.sma_slow)]
            if self.indicator is not None:
                cells.append(r.indicator)
            cells += [
                f"[{colour}]{r.signal}[/]" if colour else "",
                age,
                f"{r.rate(now):.1f}",
                f"{r.lag_ms:.0f}" if r.lag_ms is not None else "",
            ]
            table.add_row(*cells)
        return table

    def _firing_footer(self, now: float) -> str | None:
        if not self.firing:
            return None
        lines = [f"[bold red]{len(self.firing)} alert(s) firing[/]"]
        for (exchange, symbol, rule), alert in sorted(self.firing.items()):
            since = now - alert.event_time_ms / 1000
            lines.append(
                f"  {exchange} {symbol} {rule} ({alert.severity}, {since:.0f}s): {alert.summary}"
            )
        return "\n".join(lines)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.10g}"


async def run_top(
    settings: ServiceSettings,
    sort: SortKey,
    limit: int,
    stop: asyncio.Event,
    indicator: IndicatorColumn | None = None,
) -> None:
    board = Board(indicator)
    held: list[Msg] | None = []
    """Live messages while ALERTS is read back, applied after it (they are newer)."""

    async def on_msg(msg: Msg) -> None:
        if held is not None:
            held.append(msg)
        else:
            board.apply(msg.subject, msg.data)

    async with connect_bus(
        settings.nats.model_copy(update={"max_reconnect_attempts": 1}),
        name="fairprice-top",
        stop=stop,
    ) as bus:
        streams = [Stream.BOOKS, Stream.PRICES, Stream.SIGNALS, Stream.ALERTS]
        if indicator is not None:
            streams.append(Stream.CANDLES)
        for stream in streams:
            await bus.nc.subscribe(stream.wildcard, cb=on_msg)
        await seed_alerts(bus, board)
        newer, held = held or [], None
        for msg in newer:
            board.apply(msg.subject, msg.data)
        with (
            _quit_on_q(stop),
            Live(board.table(sort, limit), console=Console(), refresh_per_second=4) as live,
        ):
            while not await wait_or_stop(stop, 0.5):
                live.update(board.table(sort, limit))


async def seed_alerts(bus: Bus, board: Board) -> None:
    """Apply the ALERTS events of the last ``ALERTS_LOOKBACK_S`` (none if there is no ALERTS
    stream yet): the board then lists the alerts still firing."""
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ALERTS_LOOKBACK_S)
    with contextlib.suppress(NotFoundError), broker_errors("reading ALERTS"):
        async with StreamTail(bus, Stream.ALERTS, Stream.ALERTS.wildcard, start_time=start) as tail:
            while not tail.caught_up:
                for msg in await tail.next_batch(1000, 1.0):
                    board.apply(msg.subject, msg.data)


@contextlib.contextmanager
def _quit_on_q(stop: asyncio.Event) -> Iterator[None]:
    """While the block runs, ``q`` typed on the terminal sets ``stop`` (the terminal reads keys
    one by one meanwhile, and is restored after). Nothing when stdin is not a terminal."""
    if sys.stdin is None or not sys.stdin.isatty():
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    loop = asyncio.get_running_loop()

    def on_keys() -> None:
        if b"q" in os.read(fd, 64).lower():
            stop.set()

    loop.add_reader(fd, on_keys)
    try:
        yield
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
