"""Fixtures of the crawler's tests: a running simulator and crawler settings pointing at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from fairprice.common.settings import HttpSettings, NatsSettings
from fairprice.crawler.settings import CrawlerSection, CrawlerSettings
from fairprice.simulator.server import Simulator, run_simulator
from fairprice.simulator.settings import MarketSettings, SimulatorSection

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SIM0000USDT", "SIM0001USDT", "SIM0002USDT"]


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    settings = SimulatorSection(
        port=0,
        http=HttpSettings(port=0),
        market=MarketSettings(
            seed=7,
            symbols=["BTCUSDT", "ETHUSDT"],
            generated_symbols=10,
            tick_ms=50,
            history_ticks=20_000,
        ),
    )
    async with run_simulator(settings) as sim:
        yield sim


def crawler_settings(
    sim: Simulator, nats_settings: NatsSettings, **crawler: Any
) -> CrawlerSettings:
    section: dict[str, Any] = {
        "http": HttpSettings(host="127.0.0.1", port=0),
        "rest_url": sim.rest_url,
        "ws_url": sim.ws_url,
        "symbols": SYMBOLS,
        "reconnect_base_s": 0.05,
        "reconnect_max_s": 0.5,
        "snapshot_retry_base_s": 0.05,
        "snapshot_retry_max_s": 0.5,
        "heartbeat_s": 0.2,
        "member_ttl_s": 2.0,
        "feeds_refresh_s": 0.3,
    }
    section.update(crawler)
    return CrawlerSettings(nats=nats_settings, crawler=CrawlerSection(**section))
