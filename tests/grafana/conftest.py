"""Fixtures for the Grafana tests: the dashboards and provisioning from grafana/, and a real
influxd holding realistic points of every measurement in fairprice's InfluxDB schema."""

from __future__ import annotations

import json
import math
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from fairprice.common.feeds import STRATEGIES, Indicators
from fairprice.common.intervals import INTERVALS
from fairprice.common.messages import Book, Candle, Signal, decode
from fairprice.common.subjects import Stream
from fairprice.common.testing import InfluxServer
from fairprice.converter.fair_price import Skip
from fairprice.converter.params import Params
from fairprice.converter.symbol_pipeline import SymbolPipeline
from fairprice.storer.line_protocol import LineEncoder

GRAFANA = Path(__file__).resolve().parents[2] / "grafana"
DATABASE = "fair_price"
EXCHANGE = "sim"
SYMBOLS = ("BTCUSDT", "ETHUSDT")
METHODS = ("microprice", "mid")
LEVELS = 10
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SECONDS = 600


@dataclass(frozen=True)
class Window:
    """The dashboard time range the queries run over, in epoch milliseconds."""

    start_ms: int
    end_ms: int


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON under grafana/dashboards, by file stem."""
    return {
        p.stem: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))
    }


def provisioned_datasources() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted((GRAFANA / "provisioning" / "datasources").glob("*.yaml")):
        found.extend(yaml.safe_load(path.read_text())["datasources"])
    return found


def market_points(
    *, exchange: str, symbols: tuple[str, ...], start_ms: int, seconds: int, seed: int = 7
) -> Iterator[str]:
    """Line protocol for ``seconds`` of one book per symbol per 500 ms, as the storer writes it:
    orderbook, fair_price (one point per method), indicator, signal on SMA crossovers (and
    the market alert of a signal rule), and from the converter's own pipeline
    (``pipeline_points``) the candles of every interval with their indicators and the candle
    strategies' signals. Deterministic for a seed; prices follow a random walk so SMAs cross."""
    rng = random.Random(seed)
    for s_index, symbol in enumerate(symbols):
        price = 50_000.0 / (s_index * 15 + 1)
        tick = price * 1e-5
        fast: list[float] = []
        slow: list[float] = []
        previous_side = 0
        books: list[Book] = []
        tags = f"exchange={exchange},symbol={symbol}"
        for step in range(seconds * 2):
            ts = start_ms + step * 500
            price *= math.exp(rng.gauss(0, 4e-4) + 2e-4 * math.sin(step / 60))
            bids = [(price - tick * (i + 0.5), rng.uniform(0.01, 3)) for i in range(LEVELS)]
            asks = [(price + tick * (i + 0.5), rng.uniform(0.01, 3)) for i in range(LEVELS)]
            best_bid, bid_qty = bids[0]
            best_ask, ask_qty = asks[0]
            mid = (best_bid + best_ask) / 2
            spread = best_ask - best_bid
            micro = (best_bid * ask_qty + best_ask * bid_qty) / (bid_qty + ask_qty)
            imbalance = (bid_qty - ask_qty) / (bid_qty + ask_qty)
            levels = ",".join(
                f"{side}_{kind}_{i}={value!r}"
                for side, book in (("bid", bids), ("ask", asks))
                for i, (p, q) in enumerate(book)
                for kind, value in (("price", p), ("qty", q))
            )
            yield (
                f"orderbook,{tags} {levels},mid={mid!r},spread={spread!r},"
                f"update_id={1000 + step}i {ts}"
            )
            for method, fair in zip(METHODS, (micro, mid), strict=True):
                yield (
                    f"fair_price,{tags},method={method} price={fair!r},mid={mid!r},"
                    f"microprice={micro!r},spread={spread!r},imbalance={imbalance!r},"
                    f"impact={fair!r} {ts}"
                )
            fast = [*fast, micro][-40:]  # 20 s at two books per second
            slow = [*slow, micro][-120:]  # 60 s
            sma_fast, sma_slow = sum(fast) / len(fast), sum(slow) / len(slow)
            yield f"indicator,{tags} sma_fast={sma_fast!r},sma_slow={sma_slow!r} {ts}"
            side = (sma_fast > sma_slow) - (sma_fast < sma_slow)
            if len(slow) == 120 and side and previous_side and side != previous_side:
                action = "BUY" if side > 0 else "SELL"
                yield (
                    f'signal,{tags},strategy=sma_cross action="{action}",price={micro!r},'
                    f"sma_fast={sma_fast!r},sma_slow={sma_slow!r} {ts}"
                )
                # The market alert of a MarketFeed rule on that signal (kind signal).
                yield (
                    f"alert,{tags},rule={action.lower()},state=firing,severity=info "
                    f'kind="signal",price={micro!r},summary="{symbol} signal {action}",'
                    f"update_id={1000 + step}i {ts}"
                )
            previous_side = side or previous_side
            books.append(_book(exchange, symbol, 1000 + step, ts, bids, asks))
        # Then a book every five minutes for a day: candles of every interval close.
        for step in range(seconds * 2, seconds * 2 + 300):
            ts = start_ms + seconds * 1000 + (step - seconds * 2 + 1) * 300_000
            price *= math.exp(rng.gauss(0, 4e-3))
            bids = [(price - tick * (i + 0.5), 1.0) for i in range(LEVELS)]
            asks = [(price + tick * (i + 0.5), 1.0) for i in range(LEVELS)]
            books.append(_book(exchange, symbol, 1000 + step, ts, bids, asks))
        yield from pipeline_points(books)


PIPELINE = Params(
    intervals=INTERVALS,
    indicators=Indicators(
        rsi_period=3, macd_fast=2, macd_slow=4, macd_signal=2, bollinger_period=3, atr_period=3
    ),
    strategies=frozenset(STRATEGIES),
)
"""Every interval and strategy; short indicator periods, so ten minutes of 1-minute candles
show every indicator."""


def pipeline_points(books: list[Book]) -> Iterator[str]:
    """The candle points and candle-strategy signal points the converter's pipeline makes of
    ``books`` (one symbol's), in the storer's line protocol."""
    pipeline = SymbolPipeline(books[0].exchange, books[0].symbol, PIPELINE)
    encoder = LineEncoder()
    for book in books:
        result = pipeline.process(book)
        if isinstance(result, Skip):
            continue
        for stream, _, payload, _ in result:
            if stream is Stream.CANDLES:
                yield encoder.candle(decode(payload, Candle))
            elif stream is Stream.SIGNALS:
                signal = decode(payload, Signal)
                if signal.strategy != "sma_cross":  # the SMA ones come from the model above
                    yield encoder.signal(signal)


def _book(
    exchange: str,
    symbol: str,
    update_id: int,
    ts: int,
    bids: list[tuple[float, float]],
    asks: list[tuple[float, float]],
) -> Book:
    return Book(
        exchange=exchange,
        symbol=symbol,
        update_id=update_id,
        first_update_id=update_id,
        event_time_ms=ts,
        receive_time_ms=ts,
        bids=[(f"{p:.8f}", f"{q:.8f}") for p, q in bids],
        asks=[(f"{p:.8f}", f"{q:.8f}") for p, q in asks],
    )


@pytest.fixture
async def market_influxd(influxd: InfluxServer) -> AsyncIterator[tuple[InfluxServer, Window]]:
    """A real influxd with database fair_price holding ten minutes of two symbols."""
    lines = list(
        market_points(exchange=EXCHANGE, symbols=SYMBOLS, start_ms=START_MS, seconds=SECONDS)
    )
    async with httpx.AsyncClient(base_url=influxd.admin_url, timeout=30) as client:
        created = await client.post("/query", data={"q": f'CREATE DATABASE "{DATABASE}"'})
        created.raise_for_status()
        for first in range(0, len(lines), 5000):
            written = await client.post(
                "/write",
                params={"db": DATABASE, "precision": "ms"},
                content="\n".join(lines[first : first + 5000]),
            )
            assert written.status_code == 204, written.text
    yield influxd, Window(START_MS, START_MS + SECONDS * 1000)
