"""The weight budget follows the limit the exchange states in exchangeInfo, less the reserve."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from fairprice.common.settings import HttpSettings, NatsSettings
from fairprice.common.testing import eventually
from fairprice.crawler.budget import weight_limit_budget
from fairprice.crawler.service import run
from fairprice.simulator.server import Simulator, run_simulator
from fairprice.simulator.settings import MarketSettings, SimulatorSection

from .conftest import SYMBOLS, crawler_settings


def test_the_budget_is_the_limit_less_the_reserve_and_at_most_the_cap() -> None:
    assert weight_limit_budget(6000, 0.1) == 5400
    assert weight_limit_budget(6000, 0.1, cap=2400) == 2400
    assert weight_limit_budget(1000, 0.1, cap=2400) == 900


async def _budget_of(sim: Simulator, nats_settings: NatsSettings, **crawler: object) -> float:
    registry = CollectorRegistry()
    stop, ready = asyncio.Event(), asyncio.Event()
    settings = crawler_settings(sim, nats_settings, **crawler)
    task = asyncio.create_task(run(settings, stop=stop, ready=ready, registry=registry))
    try:
        await eventually(lambda: ready.is_set() or task.done(), within=30, what="synced")
        if task.done():
            task.result()
        spent = registry.get_sample_value("fairprice_crawler_snapshot_weight_total") or 0.0
        # exchangeInfo (20) and one 100-level snapshot (5) per symbol, at least.
        assert spent >= 20 + 5 * len(SYMBOLS)
        return registry.get_sample_value("fairprice_crawler_weight_budget") or 0.0
    finally:
        stop.set()
        await task


@pytest.mark.parametrize(
    ("limit", "cap", "budget"), [(3000, None, 2700), (3000, 1000, 1000), (600, 1000, 540)]
)
async def test_the_crawler_reads_the_exchanges_weight_limit(
    limit: int, cap: int | None, budget: float, nats_settings: NatsSettings
) -> None:
    sim_settings = SimulatorSection(
        port=0,
        http=HttpSettings(port=0),
        weight_limit=limit,
        market=MarketSettings(symbols=["BTCUSDT", "ETHUSDT"], generated_symbols=3, tick_ms=50),
    )
    async with run_simulator(sim_settings) as sim:
        assert await _budget_of(sim, nats_settings, weight_budget=cap) == budget
        asked = sim.registry.get_sample_value(
            "fairprice_simulator_rest_requests_total",
            {"endpoint": "exchangeInfo", "status": "200"},
        )
        assert asked == 1


async def test_without_an_answer_the_crawler_keeps_the_known_limit(
    simulator: Simulator, nats_settings: NatsSettings
) -> None:
    simulator.set_faults(rest_errors=1, rest_error_status=503)  # exchangeInfo fails once
    assert await _budget_of(simulator, nats_settings) == 5400  # Binance's 6000 less 10 %
