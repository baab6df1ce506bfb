"""The peer: cryptofeed 2.4.1's Binance feed into its own InfluxDB backend, as its users run it.

    python bench/peer_feed.py --rest http://SIM --ws ws://SIM --influx http://PASS-THROUGH \\
        --bucket DB --store books|price --symbols A,B,... --status FILE --check FILE --log FILE

bench/peer.py starts it (``Pipeline.spawn``) in the workspace's environment with the ``peer``
dependency group (``uv run --group peer``). ``L2_BOOK`` with ``max_depth=20``, diff events of
``@depth@100ms``, the 20-level snapshot cryptofeed asks for at that depth; stored by
``BookInflux(snapshots_only=True)`` (``--store books``: every book's top 20 as one point) or, for
``--store price``, by a book callback that writes the mid through cryptofeed's InfluxDB writer.
``FeedHandler.run()`` owns the loop and its signals (SIGTERM/SIGINT stop it); the loop it
runs is made here first (uvloop 0.22+ makes none on demand, so cryptofeed's own
``asyncio.get_event_loop()`` would fail).

Two small changes make it reach the simulator: the endpoints (REST and WebSocket) of a
``Binance`` subclass, and ``connect()`` building a ``WSAsyncConn`` subclass, since
``WSAsyncConn`` refuses any address that is not ``wss://``.

Every second it writes ``--status`` (JSON: books seen, symbols seen).
On SIGUSR1 it takes the next book of each symbol (up to ``CHECK_SYMBOLS``), asks the
simulator for its true book at that book's update id (``/control/book``), and writes
``--check`` (JSON: how many books were checked and how many differ in their top 20).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from cryptofeed import FeedHandler
from cryptofeed.backends.influxdb import BookInflux, InfluxCallback
from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint, WSAsyncConn
from cryptofeed.defines import L2_BOOK
from cryptofeed.exchanges import Binance
from cryptofeed.types import OrderBook

DEPTH = 20
CHECK_SYMBOLS = 200

Levels = list[tuple[Decimal, Decimal]]


class PlainWSConn(WSAsyncConn):  # type: ignore[misc]
    """``WSAsyncConn`` that accepts ``ws://`` (the simulator speaks no TLS)."""

    def __init__(self, address: str, conn_id: str, **kwargs: Any) -> None:
        super().__init__("wss://" + address.removeprefix("ws://"), conn_id, **kwargs)
        self.address = address


def simulated_binance(rest_url: str, ws_url: str) -> type[Binance]:
    """``Binance`` with its two endpoints on the simulator."""

    class SimulatedBinance(Binance):  # type: ignore[misc]
        websocket_endpoints = [WebsocketEndpoint(ws_url)]
        rest_endpoints = [
            RestEndpoint(
                rest_url,
                routes=Routes("/api/v3/exchangeInfo", l2book="/api/v3/depth?symbol={}&limit={}"),
            )
        ]

        def connect(self) -> list[tuple[Any, ...]]:
            # Feed.connect() without its filters and limits (one endpoint, public channels),
            # with the connection class that takes ws://.
            addresses = self._address()
            options = self.websocket_endpoints[0].options
            return [
                (
                    PlainWSConn(address, self.id, subscription=self.subscription, **options),
                    self.subscribe,
                    self.message_handler,
                    self.authenticate,
                )
                for address in (addresses if isinstance(addresses, list) else [addresses])
            ]

    return SimulatedBinance


class MidInflux(InfluxCallback):  # type: ignore[misc]
    """A book callback storing the mid price, through cryptofeed's InfluxDB writer."""

    default_key = "price"

    async def __call__(self, book: OrderBook, receipt_timestamp: float) -> None:
        if not len(book.book.bids) or not len(book.book.asks):
            return
        mid = (book.book.bids.index(0)[0] + book.book.asks.index(0)[0]) / 2
        await self.write(
            {
                "exchange": book.exchange,
                "symbol": book.symbol,
                "timestamp": book.timestamp,
                "receipt_timestamp": receipt_timestamp,
                "mid": mid,
            }
        )


class Watch:
    """The first callback of every book: counts, status file, and the true-book check."""

    def __init__(self, status: Path, check: Path, sim_url: str) -> None:
        self.status, self.check, self.sim_url = status, check, sim_url
        self.books = 0
        self.symbols: set[str] = set()
        self.sampling = False
        self.sample: dict[str, tuple[int, Levels, Levels]] = {}

    async def __call__(self, book: OrderBook, receipt_timestamp: float) -> None:
        self.books += 1
        self.symbols.add(book.symbol)
        if self.sampling and book.symbol not in self.sample:
            bids = book.book.bids.to_list()[:DEPTH]
            asks = book.book.asks.to_list()[:DEPTH]
            self.sample[book.symbol] = (book.sequence_number, bids, asks)
            if len(self.sample) >= min(CHECK_SYMBOLS, len(self.symbols)):
                self.sampling = False
                asyncio.get_running_loop().create_task(self._compare(dict(self.sample)))

    def start_check(self) -> None:
        self.sample.clear()
        self.sampling = True

    async def report(self) -> None:
        while True:
            state = {"at": time.time(), "books": self.books, "symbols": len(self.symbols)}
            self.status.with_suffix(".tmp").write_text(json.dumps(state))
            self.status.with_suffix(".tmp").replace(self.status)
            await asyncio.sleep(1.0)

    async def _compare(self, sample: dict[str, tuple[int, Levels, Levels]]) -> None:
        differ, gone, examples = 0, 0, []
        async with aiohttp.ClientSession() as http:
            for symbol, (update_id, bids, asks) in sample.items():
                exchange_symbol = symbol.replace("-", "")
                params = {"symbol": exchange_symbol, "update_id": update_id, "limit": DEPTH}
                async with http.get(self.sim_url + "/control/book", params=params) as r:
                    if r.status == 410:  # older than the simulator's history
                        gone += 1
                        continue
                    r.raise_for_status()
                    true = await r.json()
                true_bids = [(Decimal(p), Decimal(q)) for p, q in true["bids"]]
                true_asks = [(Decimal(p), Decimal(q)) for p, q in true["asks"]]
                if (bids, asks) != (true_bids, true_asks):
                    differ += 1
                    if len(examples) < 3:
                        examples.append(
                            {
                                "symbol": symbol,
                                "update_id": update_id,
                                "levels": [len(bids), len(asks)],
                                "first_differing": [
                                    _first_difference(bids, true_bids),
                                    _first_difference(asks, true_asks),
                                ],
                            }
                        )
        result = {"checked": len(sample) - gone, "differ": differ, "too_old": gone}
        self.check.write_text(json.dumps(result | {"examples": examples}))


def _first_difference(mine: Levels, true: Levels) -> int | None:
    """The first level (0 = best) where the two sides differ, None when they do not."""
    for level, (a, b) in enumerate(zip(mine, true, strict=False)):
        if a != b:
            return level
    return None if len(mine) == len(true) else min(len(mine), len(true))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rest", required=True)
    parser.add_argument("--ws", required=True)
    parser.add_argument("--influx", required=True, help="the /api/v2 pass-through")
    parser.add_argument("--bucket", required=True, help="the InfluxDB database")
    parser.add_argument("--store", choices=["books", "price"], required=True)
    parser.add_argument("--symbols", required=True, help="exchange symbols, comma-separated")
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("--check", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()

    handler = FeedHandler(
        config={"uvloop": True, "log": {"filename": str(args.log), "level": "WARNING"}}
    )
    feed_class = simulated_binance(args.rest, args.ws)
    by_exchange = {v: k for k, v in feed_class.symbol_mapping().items()}
    symbols = [by_exchange[s] for s in args.symbols.split(",")]
    influx = {"addr": args.influx, "org": "bench", "bucket": args.bucket, "token": "none"}
    backend: InfluxCallback = (
        BookInflux(**influx, snapshots_only=True) if args.store == "books" else MidInflux(**influx)
    )
    watch = Watch(args.status, args.check, args.rest)
    handler.add_feed(
        feed_class(
            symbols=symbols,
            channels=[L2_BOOK],
            max_depth=DEPTH,
            callbacks={L2_BOOK: [watch, backend]},
        )
    )
    # FeedHandler.run() takes the current loop, and uvloop 0.22+ no longer makes one on demand.
    loop = asyncio.new_event_loop()  # a uvloop loop: FeedHandler() set uvloop's policy
    asyncio.set_event_loop(loop)
    loop.add_signal_handler(signal.SIGUSR1, watch.start_check)
    loop.create_task(watch.report())
    handler.run()


if __name__ == "__main__":
    main()
