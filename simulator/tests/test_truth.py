"""The true book: a client following Binance's sync rules ends with exactly the true book."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import aiohttp

from fairprice.simulator import Simulator

from .conftest import SimFactory


class _LocalBook:
    """A minimal client book kept by Binance's documented snapshot + diff procedure."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.update_id: int = snapshot["lastUpdateId"]
        self.bids = {p: q for p, q in snapshot["bids"]}
        self.asks = {p: q for p, q in snapshot["asks"]}

    def apply(self, event: dict[str, Any]) -> bool:
        """Apply a diff event; False if it is older than the book."""
        if event["u"] <= self.update_id:
            return False
        assert event["U"] <= self.update_id + 1 <= event["u"], "gap"
        for side, levels in ((self.bids, event["b"]), (self.asks, event["a"])):
            for price, qty in levels:
                if Decimal(qty) == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.update_id = event["u"]
        return True

    def top(self, depth: int) -> tuple[list[list[str]], list[list[str]]]:
        bids = sorted(self.bids.items(), key=lambda kv: Decimal(kv[0]), reverse=True)[:depth]
        asks = sorted(self.asks.items(), key=lambda kv: Decimal(kv[0]))[:depth]
        return [list(level) for level in bids], [list(level) for level in asks]


async def _follow(
    sim: Simulator, http: aiohttp.ClientSession, stream: str, events: int
) -> list[tuple[int, tuple[list[list[str]], list[list[str]]]]]:
    """Sync a local book (buffer, snapshot, drop old, apply) and record its top 20 per event."""
    tops = []
    async with http.ws_connect(f"{sim.ws_url}/ws/{stream}") as ws:
        buffered = [json.loads((await ws.receive(timeout=10)).data)]
        async with http.get(f"{sim.rest_url}/api/v3/depth?symbol=BTCUSDT&limit=5000") as r:
            book = _LocalBook(await r.json())
        while len(tops) < events:
            event = buffered.pop(0) if buffered else json.loads((await ws.receive(timeout=10)).data)
            if book.apply(event):
                tops.append((book.update_id, book.top(20)))
    return tops


async def test_truth_diff_events_rebuild_the_true_book(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    tops = await _follow(sim, http, "btcusdt@depth@100ms", 40)
    for update_id, (bids, asks) in tops:
        truth = sim.true_book("BTCUSDT", update_id, 20)
        assert truth.last_update_id == update_id
        assert (bids, asks) == (truth.bids, truth.asks)


async def test_truth_slow_stream_rebuilds_the_true_book(
    make_sim: SimFactory, http: aiohttp.ClientSession
) -> None:
    sim = await make_sim(market={"tick_ms": 5.0})
    tops = await _follow(sim, http, "btcusdt@depth", 5)
    for update_id, (bids, asks) in tops:
        truth = sim.true_book("BTCUSDT", update_id, 20)
        assert (bids, asks) == (truth.bids, truth.asks)


async def test_truth_book_ticker_is_the_true_best(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{sim.ws_url}/ws/btcusdt@bookTicker") as ws:
        tickers = [json.loads((await ws.receive(timeout=10)).data) for _ in range(10)]
    for ticker in tickers:
        truth = sim.true_book("BTCUSDT", ticker["u"], 1)
        assert [ticker["b"], ticker["B"]] == truth.bids[0]
        assert [ticker["a"], ticker["A"]] == truth.asks[0]


async def test_truth_control_book_endpoint(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(f"{sim.ws_url}/ws/ethusdt@depth@100ms") as ws:
        events = [json.loads((await ws.receive(timeout=10)).data) for _ in range(5)]
    update_id = events[2]["u"]
    url = f"{sim.rest_url}/control/book?symbol=ETHUSDT&update_id={update_id}&limit=10"
    async with http.get(url) as response:
        assert response.status == 200
        body = await response.json()
    assert body == sim.true_book("ETHUSDT", update_id, 10).to_json()
    assert body["lastUpdateId"] == update_id and len(body["bids"]) == 10
    async with http.get(f"{sim.rest_url}/control/book?symbol=ETHUSDT&update_id=1") as response:
        assert response.status == 410
    async with http.get(f"{sim.rest_url}/control/book?symbol=NOPE") as response:
        assert response.status == 404
    async with http.get(f"{sim.rest_url}/control/status") as response:
        status = await response.json()
    assert status["books"]["ETHUSDT"]["lastUpdateId"] >= events[-1]["u"]


async def test_truth_same_seed_same_events_over_the_wire(
    make_sim: SimFactory, http: aiohttp.ClientSession
) -> None:
    """Two simulators with one seed send the same events for a symbol, whatever the timing."""
    first = await make_sim(market={"seed": 42})
    second = await make_sim(market={"seed": 42, "tick_ms": 7.0})
    other = await make_sim(market={"seed": 43})

    async def events(sim: Simulator) -> list[dict[str, Any]]:
        async with http.ws_connect(f"{sim.ws_url}/ws/sim0003usdt@depth@100ms") as ws:
            frames = [json.loads((await ws.receive(timeout=10)).data) for _ in range(30)]
        for frame in frames:
            del frame["E"]
        return frames

    one, two, three = await events(first), await events(second), await events(other)
    assert one == two
    assert one != three
