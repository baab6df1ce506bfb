"""Replicas coming and going gracefully lose no update, even with redundancy 1: the old owner
keeps crawling a symbol until the new owner's heartbeat lists it synced, however long that
takes (here snapshots take 3 s each, longer than the fixed 1.5 s handoff this test used to
run with, which then lost updates on a busy machine)."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from fairprice.common.bus import Bus
from fairprice.common.settings import NatsSettings
from fairprice.common.subjects import Stream
from fairprice.common.testing import eventually
from fairprice.crawler.service import run
from fairprice.simulator.server import Simulator

from .conftest import assert_every_update_once, crawler_settings, stored_books

pytestmark = pytest.mark.slow


def _gauge(registry: CollectorRegistry, name: str) -> float:
    return registry.get_sample_value(name) or 0.0


async def test_join_and_graceful_leave_hand_symbols_over_without_a_gap(
    simulator: Simulator, nats_settings: NatsSettings, bus: Bus
) -> None:
    symbols = sorted(simulator.market.specs)  # 12 symbols
    settings = crawler_settings(
        simulator, nats_settings, symbols=symbols, publish_every_event=True, handoff_s=60
    )
    first, second = CollectorRegistry(), CollectorRegistry()
    stop_first, ready_first = asyncio.Event(), asyncio.Event()
    stop_second, ready_second = asyncio.Event(), asyncio.Event()
    task_first = asyncio.create_task(
        run(settings, stop=stop_first, ready=ready_first, registry=first)
    )
    task_second: asyncio.Task[None] | None = None
    try:
        await eventually(ready_first.is_set, within=30, what="first replica ready")
        start = (await bus.jsm.stream_info(Stream.BOOKS.value)).state.last_seq + 1
        # A second replica joins: some symbols move to it, and its snapshots are slow; the
        # first lets go of each once the second has it synced.
        simulator.set_faults(rest_delay_s=3.0)
        task_second = asyncio.create_task(
            run(settings, stop=stop_second, ready=ready_second, registry=second)
        )
        await eventually(
            lambda: (
                0 < _gauge(second, "fairprice_crawler_symbols_owned") < len(symbols)
                and _gauge(first, "fairprice_crawler_symbols_owned")
                + _gauge(second, "fairprice_crawler_symbols_owned")
                == len(symbols)
            ),
            within=30,
            what="symbols shared by two replicas",
        )
        # The first replica stops gracefully: the second takes everything over.
        with capture_logs() as logs:
            stop_first.set()
            await task_first
        events = [e["event"] for e in logs]
        assert "handed over" in events and "handoff time over" not in events, events
        await eventually(
            lambda: _gauge(second, "fairprice_crawler_symbols_synced") == len(symbols),
            within=30,
            what="second replica owns and synced all",
        )
        mark = (await bus.jsm.stream_info(Stream.BOOKS.value)).state.last_seq

        async def more_books() -> bool:
            info = await bus.jsm.stream_info(Stream.BOOKS.value)
            return info.state.last_seq > mark + 10 * len(symbols)

        await eventually(more_books, within=30, what="books after the handover")
    finally:
        stop_first.set()
        stop_second.set()
        await asyncio.gather(task_first, *([task_second] if task_second else []))
    assert_every_update_once(await stored_books(bus, start), symbols)
