"""The whole pipeline as real processes on 50 simulated symbols: data reaches every InfluxDB
measurement, every stored book has its fair price, and every stage agrees with the next.

One pipeline (nats-server, influxd, simulator, storer, converter, crawler) serves every test
of this module; they only read. Windows are of exchange event time, which the simulator takes
from the wall clock.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from fairprice.cli.processes import Pipeline
from fairprice.common.bus import Bus
from fairprice.common.testing import eventually

from .conftest import (
    Lake,
    Window,
    audit_until_clean,
    candle_key,
    expected_candles,
    influx_rows,
    measurement_has_points,
    now_ms,
    running_pipeline,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(240),  # servers, processes, outages: past the default 120 s
    pytest.mark.asyncio(loop_scope="module"),
]

SYMBOLS = [f"SIM{n:04d}USDT" for n in range(50)]
ENV = {
    # Snapshots of 100 levels weigh 5: 50 symbols sync at once under the 2400/min budget.
    # A book after every event, so that every update id can be accounted for.
    "crawler": {
        "FAIRPRICE_CRAWLER__SNAPSHOT_LIMIT": "100",
        "FAIRPRICE_CRAWLER__PUBLISH_EVERY_EVENT": "true",
    },
    # Short windows and no band: SMA crossovers (signals) within seconds.
    "converter": {
        "FAIRPRICE_CONVERTER__SMA_FAST_S": "1",
        "FAIRPRICE_CONVERTER__SMA_SLOW_S": "3",
        "FAIRPRICE_CONVERTER__MIN_GAP": "0",
    },
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running(module_dir: Path) -> AsyncIterator[tuple[Pipeline, Bus, Lake]]:
    async with running_pipeline(module_dir, symbols=SYMBOLS, env=ENV) as started:
        yield started


async def test_data_reaches_every_measurement_within_seconds(
    running: tuple[Pipeline, Bus, Lake],
) -> None:
    pipeline, _, _ = running
    started = time.monotonic()
    for measurement, field_name in (
        ("orderbook", "update_id"),
        ("fair_price", "price"),
        ("indicator", "sma_fast"),
        ("signal", "price"),
    ):

        async def stored(m: str = measurement, f: str = field_name) -> bool:
            return await measurement_has_points(pipeline.influx_url(), m, f)

        await eventually(stored, within=20, interval=0.2, what=f"points in {measurement}")
        print(f"\n{measurement}: first points {time.monotonic() - started:.1f} s after ready")
    rows = await influx_rows(
        pipeline.influx_url(), 'SELECT count("update_id") FROM orderbook GROUP BY symbol'
    )
    assert {symbol for symbol, _ in rows} == set(SYMBOLS)


async def test_every_stored_book_has_its_fair_price(running: tuple[Pipeline, Bus, Lake]) -> None:
    pipeline, bus, lake = running
    start = now_ms()
    window = Window(start, start + 3_000)

    async def closed() -> bool:
        return now_ms() > window.end_ms + 1_000

    await eventually(closed, within=10, what="window closed")
    result = await audit_until_clean(
        lake, bus, pipeline.influx_url(), window, within=30, title="50 symbols, books vs prices"
    )
    books = await influx_rows(
        pipeline.influx_url(),
        f"SELECT update_id FROM orderbook WHERE {window.influxql} GROUP BY symbol",
    )
    prices = await influx_rows(
        pipeline.influx_url(),
        f"SELECT price FROM fair_price WHERE {window.influxql} GROUP BY symbol",
    )
    assert books, "no books stored in the window"
    assert {(s, row[0]) for s, row in books} == {(s, row[0]) for s, row in prices}
    assert result.figures["orderbook points"] == len(books)


async def test_counts_agree_across_stages_for_a_closed_window(
    running: tuple[Pipeline, Bus, Lake],
) -> None:
    """BOOKS = orderbook, PRICES = fair_price = one per book, SIGNALS = signal = what the
    prices' trend implies, over 5 s of event time once the pipeline caught up."""
    pipeline, bus, lake = running
    start = now_ms()
    window = Window(start, start + 5_000)
    await eventually(lambda: now_ms() > window.end_ms + 1_000, within=10, what="window closed")
    result = await audit_until_clean(
        lake, bus, pipeline.influx_url(), window, within=30, title="50 symbols, every stage"
    )
    figures = result.figures
    assert figures["books in BOOKS (unique ids)"] > 50 * 5, "fewer books than one a second"
    assert figures["signals in SIGNALS"] > 0, "no signal in the window"
    assert (
        figures["books in BOOKS (unique ids)"]
        == figures["prices in PRICES"]
        == figures["orderbook points"]
        == figures["fair_price points"]
    )
    assert figures["signals in SIGNALS"] == figures["signal points"]
    assert figures["update ids not published"] == 0, result.gaps


async def test_candles_of_every_closed_minute_are_stored(
    running: tuple[Pipeline, Bus, Lake],
) -> None:
    """The first candles need a minute boundary of event time (wall clock): up to a minute.
    Each one is the OHLC and count of its minute's prices, in CANDLES once and in the candle
    measurement (interval 1m)."""
    pipeline, bus, lake = running

    async def stored() -> bool:
        return await measurement_has_points(pipeline.influx_url(), "candle", "count")

    await eventually(stored, within=75, interval=0.5, what="points in candle")

    async def agree() -> bool:
        await lake.read(bus)
        derived = Counter(candle_key(c) for c in expected_candles(lake.prices.messages).values())
        published = Counter(candle_key(c) for c in lake.candles.messages if c.interval == "1m")
        rows = await influx_rows(
            pipeline.influx_url(),
            "SELECT open, high, low, close, count FROM candle WHERE interval = '1m' "
            "GROUP BY symbol",
        )
        points = Counter((s, *row) for s, row in rows)
        return bool(published) and derived == published == points

    await eventually(agree, within=20, interval=0.5, what="candles agree")
    print(f"\ncandles: {len(lake.candles.messages)} in CANDLES; 1m = candle points = derived")
