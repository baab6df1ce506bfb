"""`fairprice status` against real NATS and a real health server, as the read-only viewer."""

from __future__ import annotations

import pytest
from nats.js.api import AckPolicy, ConsumerConfig
from prometheus_client import CollectorRegistry

from fairprice.cli.retention import StreamHolding, format_duration
from fairprice.cli.status import collect_status
from fairprice.common.bus import Bus, ensure_streams
from fairprice.common.health import HealthServer, Readiness
from fairprice.common.publisher import Publisher
from fairprice.common.settings import (
    HttpSettings,
    ServiceSettings,
    StreamLimits,
    StreamsSettings,
)
from fairprice.common.subjects import books_subject
from fairprice.common.testing import NatsServer, nats_settings_of
from fairprice.crawler.binance import Binance
from fairprice.crawler.budget import WeightBudget
from fairprice.crawler.exchange import DepthEvent, Snapshot
from fairprice.crawler.metrics import CrawlerMetrics
from fairprice.crawler.progress import SyncProgress
from fairprice.crawler.streams import StreamPool
from fairprice.crawler.sync import SyncEngine


async def test_status_reports_readiness_streams_and_lag(bus: Bus, nats_server: NatsServer) -> None:
    await ensure_streams(bus.jsm, StreamsSettings())
    async with Publisher(bus.nc) as publisher:
        for seq in range(25):
            await publisher.publish(books_subject("sim", "A"), b"{}", f"sim:A:{seq}")
    await bus.jsm.add_consumer(
        "BOOKS", ConsumerConfig(durable_name="storer-books", ack_policy=AckPolicy.EXPLICIT)
    )
    readiness = Readiness("nats")
    async with HealthServer(
        HttpSettings(host="127.0.0.1", port=0), CollectorRegistry(), readiness
    ) as server:
        services = {"storer": f"http://127.0.0.1:{server.port}", "crawler": "http://127.0.0.1:9"}
        settings = ServiceSettings(nats=nats_settings_of(nats_server, "viewer"))
        health, streams, consumers, warnings = await collect_status(settings, services)
        assert [(h.name, h.ready) for h in health] == [("storer", False), ("crawler", False)]
        assert health[0].detail == "not ready: nats"
        assert health[1].detail.startswith("unreachable")
        readiness.set("nats")
        health, _, _, _ = await collect_status(settings, services)
        assert health[0].ready
    stream_rows = dict(zip(streams.columns[0].cells, streams.columns[1].cells, strict=True))
    assert stream_rows["BOOKS"] == "25"
    consumer_rows = list(zip(*(c.cells for c in consumers.columns), strict=True))
    assert consumer_rows == [("BOOKS", "storer-books", "25", "0", "0")]
    assert warnings == []  # 25 books of a 2 GiB stream


async def test_status_shows_a_crawlers_sync_progress(bus: Bus, nats_server: NatsServer) -> None:
    # The crawler's own metrics, served by its own health server: 1 of 3 symbols synced.
    engine = SyncEngine(Binance())
    for symbol in ("AAA", "BBB", "CCC"):
        engine.add(symbol)
    engine.on_event(DepthEvent("AAA", 5, 5, 0, [], []), 0)
    engine.on_snapshot("AAA", Snapshot(5, [], []))
    progress = SyncProgress(clock=iter([0.0, 10.0]).__next__)
    progress.sample(0, 3)
    progress.sample(engine.synced_count, len(engine.symbols))  # 1 a 10 s: 20 s left
    registry = CollectorRegistry()
    pool = StreamPool(Binance(), "ws://127.0.0.1:9", _ignore, streams_per_connection=10)
    CrawlerMetrics(registry).collect_from(engine, pool, WeightBudget(5400), progress)
    async with (
        HealthServer(
            HttpSettings(host="127.0.0.1", port=0), registry, Readiness("synced")
        ) as crawler,
        HealthServer(
            HttpSettings(host="127.0.0.1", port=0), CollectorRegistry(), Readiness()
        ) as storer,
    ):
        services = {
            "crawler": f"http://127.0.0.1:{crawler.port}",
            "storer": f"http://127.0.0.1:{storer.port}",
        }
        health, _, _, _ = await collect_status(
            ServiceSettings(nats=nats_settings_of(nats_server, "viewer")), services
        )
    assert [(h.name, h.sync) for h in health] == [
        ("crawler", "synced 1 of 3, ~20 s left"),
        ("storer", ""),
    ]


async def _ignore(_event: DepthEvent, _receive_ms: int) -> None:
    return None


def test_stream_holding_at_the_current_rate() -> None:
    """1 MB in 10 s is 100 kB/s: a 14.4 MB stream holds 144 s unless its max_age is shorter."""
    info = {
        "config": {"name": "BOOKS", "max_bytes": 14_400_000, "max_age": 3600 * 10**9},
        "state": {
            "messages": 1000,
            "bytes": 1_000_000,
            "first_ts": "2026-12-01T10:00:00.123456789Z",
            "last_ts": "2026-12-01T10:00:10.123456789Z",
        },
    }
    holding = StreamHolding.from_info(info)
    assert holding.holds_s == pytest.approx(144.0)
    assert format_duration(holding.holds_s) == "2.4 min"
    assert holding.backlog_share(7200) == pytest.approx(0.5)
    info["config"]["max_age"] = 60 * 10**9
    assert StreamHolding.from_info(info).holds_s == 60.0
    assert format_duration(None) == "-"


async def test_status_warns_when_a_backlog_passes_half_of_a_streams_limit(
    bus: Bus, nats_server: NatsServer
) -> None:
    small = StreamsSettings(books=StreamLimits(max_age_s=3600, max_bytes=20_000))
    await ensure_streams(bus.jsm, small)
    await bus.jsm.add_consumer(
        "BOOKS", ConsumerConfig(durable_name="storer-books", ack_policy=AckPolicy.EXPLICIT)
    )
    async with Publisher(bus.nc) as publisher:
        for seq in range(60):
            await publisher.publish(books_subject("sim", "A"), b"x" * 200, f"sim:A:{seq}")
    settings = ServiceSettings(nats=nats_settings_of(nats_server, "viewer"))
    _, streams, _, warnings = await collect_status(settings, {})
    holds = dict(zip(streams.columns[0].cells, streams.columns[5].cells, strict=True))
    assert holds["BOOKS"].endswith(("s", "min", "h"))
    assert [w.split(":")[0] for w in warnings] == ["storer-books on BOOKS"]
    assert "of what BOOKS holds" in warnings[0]
