"""The window rule against the simulator: a trend walks the price far past a 100-level
snapshot's edge, and every published top-N still equals the exchange's book."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from fairprice.common.bus import Bus
from fairprice.common.messages import Book, decode
from fairprice.common.settings import HttpSettings, NatsSettings
from fairprice.common.subjects import books_symbol_filter
from fairprice.common.testing import eventually
from fairprice.crawler.service import run
from fairprice.simulator.server import run_simulator
from fairprice.simulator.settings import MarketSettings, SimulatorSection

from .conftest import assert_every_update_once, crawler_settings, stored_books

SYMBOL = "TRENDUSDT"
TREND_TICKS = 400
"""Far past the ~111 ticks a 100-level snapshot covers (the book fills 90 % of its ticks)."""


@pytest.mark.parametrize("window_check", [True, False], ids=["window_check", "no_check"])
async def test_a_trend_past_the_snapshot_window_publishes_only_true_levels(
    window_check: bool, nats_settings: NatsSettings, bus: Bus
) -> None:
    market = MarketSettings(
        seed=11,
        symbols=[SYMBOL],
        generated_symbols=0,
        tick_ms=20,
        move_probability=0.0,  # the price moves only with the trend
        history_ticks=50_000,
    )
    sim_settings = SimulatorSection(port=0, http=HttpSettings(port=0), market=market)
    async with run_simulator(sim_settings) as sim:
        settings = crawler_settings(
            sim,
            nats_settings,
            symbols=[SYMBOL],
            depth=20,
            publish_every_event=True,
            snapshot_limit=100,
            window_check=window_check,
        )
        registry = CollectorRegistry()
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(run(settings, stop=stop, ready=ready, registry=registry))
        try:
            await eventually(lambda: ready.is_set() or task.done(), within=30, what="synced")
            if task.done():
                task.result()
            book = sim.book(SYMBOL)
            sim.set_faults(symbol=SYMBOL, trend_ticks=TREND_TICKS)
            await eventually(lambda: book.trend == 0, within=60, what="the trend walked")
            end_id = book.last_update_id
            info = await bus.jsm.stream_info("BOOKS")

            async def published_past_the_trend() -> bool:
                msg = await bus.jsm.get_last_msg("BOOKS", books_symbol_filter("binance", SYMBOL))
                assert msg.data is not None
                last = decode(msg.data, Book)
                # Past the trend's end, and deep again if a window was still being deepened.
                full = len(last.bids) == len(last.asks) == 20 or not window_check
                return last.update_id >= end_id and full

            await eventually(published_past_the_trend, within=30, what="books past the trend")
        finally:
            stop.set()
            await task
        books = await stored_books(bus, 1)
        assert info.state.last_seq > 0
        assert_every_update_once(books, [SYMBOL])
        wrong = []
        for published in books:
            truth = sim.true_book(SYMBOL, published.update_id, depth=20)
            bids = [list(level) for level in published.bids]
            asks = [list(level) for level in published.asks]
            if bids != truth.bids[: len(bids)] or asks != truth.asks[: len(asks)]:
                wrong.append(published.update_id)
        deeper = sum(
            registry.get_sample_value("fairprice_crawler_window_snapshots_total", {"limit": str(n)})
            or 0.0
            for n in (500, 1000, 5000)
        )
        moved = book.center - TREND_TICKS
        assert moved > 0
    if window_check:
        # Every published level is the exchange's, at the same update id; the thin window was
        # deepened while the book kept publishing (no gap above), and the books were deep.
        assert wrong == []
        assert deeper >= 1
        # While a deeper snapshot is on the way a side may be published short (flagged with
        # its known-correct count); most books are whole, however slow the machine.
        assert sum(len(b.asks) == 20 for b in books) > 0.5 * len(books)
        assert all(b.asks_known is not None and b.asks_known >= len(b.asks) for b in books)
    else:
        # A plain snapshot + diff book: once the price passed the 100-level window, its top 20
        # missed the levels the snapshot never showed and no diff ever touched.
        assert len(wrong) > 0
        assert deeper == 0
