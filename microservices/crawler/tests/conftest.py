"""Fixtures of the crawler's tests: a running simulator and crawler settings pointing at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from fairprice.common.bus import Bus
from fairprice.common.messages import Book, decode
from fairprice.common.settings import HttpSettings, NatsSettings
from fairprice.common.subjects import Stream
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
        "handoff_s": 0.0,
    }
    section.update(crawler)
    return CrawlerSettings(nats=nats_settings, crawler=CrawlerSection(**section))


async def stored_books(bus: Bus, first_seq: int) -> list[Book]:
    """Every book in the BOOKS stream from sequence ``first_seq`` on."""
    info = await bus.jsm.stream_info(Stream.BOOKS.value)
    books = []
    for seq in range(first_seq, info.state.last_seq + 1):
        msg = await bus.jsm.get_msg(Stream.BOOKS.value, seq)
        assert msg.data is not None
        books.append(decode(msg.data, Book))
    return books


def assert_every_update_once(books: list[Book], symbols: list[str]) -> None:
    """Per symbol: no update id twice, and each book starts right after the previous one."""
    for symbol in symbols:
        ids = [(b.first_update_id, b.update_id) for b in books if b.symbol == symbol]
        assert len(ids) > 5, symbol
        finals = [last for _, last in ids]
        assert len(finals) == len(set(finals)), f"{symbol}: duplicate update ids"
        gaps = [(a, b) for a, b in zip(ids, ids[1:], strict=False) if b[0] != a[1] + 1]
        assert not gaps, f"{symbol}: missing updates between {gaps[:3]}"
