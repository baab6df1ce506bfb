"""The crawler in-process against the simulator and a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry

from fairprice.common.bus import Bus, connect_bus
from fairprice.common.errors import SettingsError
from fairprice.common.feeds import Feed, encode_feed
from fairprice.common.kv import Bucket, open_bucket
from fairprice.common.messages import Book, decode
from fairprice.common.settings import HttpSettings, NatsSettings
from fairprice.common.subjects import Stream
from fairprice.common.testing import NatsServer, eventually
from fairprice.crawler.adapters import exchange_for
from fairprice.crawler.binance import Binance
from fairprice.crawler.recording import read_recording
from fairprice.crawler.replay import Replayer
from fairprice.crawler.service import run
from fairprice.crawler.settings import CrawlerSettings
from fairprice.simulator.server import Simulator, run_simulator
from fairprice.simulator.settings import MarketSettings, SimulatorSection

from .conftest import SYMBOLS, crawler_settings


@contextlib.asynccontextmanager
async def _crawler(settings: CrawlerSettings) -> AsyncIterator[asyncio.Event]:
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        run(settings, stop=stop, ready=ready, registry=CollectorRegistry()), name="crawler"
    )
    try:
        await eventually(lambda: ready.is_set() or task.done(), within=30, what="crawler ready")
        if task.done():
            task.result()
        yield stop
    finally:
        stop.set()
        await task


class _Latest:
    """The latest book per symbol, from a core NATS subscription on books.>."""

    def __init__(self) -> None:
        self.books: dict[str, Book] = {}
        self.count = 0

    async def on_msg(self, msg: object) -> None:
        book = decode(msg.data, Book)  # type: ignore[attr-defined]
        self.books[book.symbol] = book
        self.count += 1


async def test_crawler_publishes_the_true_book(
    simulator: Simulator, nats_settings: NatsSettings, bus: Bus
) -> None:
    latest = _Latest()
    await bus.nc.subscribe(Stream.BOOKS.wildcard, cb=latest.on_msg)
    settings = crawler_settings(simulator, nats_settings, publish_every_event=True)
    async with _crawler(settings):
        await eventually(lambda: set(latest.books) == set(SYMBOLS), within=20, what="books")
        for symbol in SYMBOLS:
            book = latest.books[symbol]
            truth = simulator.true_book(symbol, book.update_id, depth=20)
            assert [list(level) for level in book.bids] == truth.bids
            assert [list(level) for level in book.asks] == truth.asks


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


@contextlib.asynccontextmanager
async def _crawler_with_registry(
    settings: CrawlerSettings,
) -> AsyncIterator[CollectorRegistry]:
    registry = CollectorRegistry()
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(settings, stop=stop, ready=ready, registry=registry))
    try:
        await eventually(lambda: ready.is_set() or task.done(), within=30, what="crawler ready")
        if task.done():
            task.result()
        yield registry
    finally:
        stop.set()
        await task


# fault name -> (fault plan or simulator action, the metric that shows the fault took effect)
FAULTS: dict[str, tuple[dict[str, object], str, dict[str, str]]] = {
    "gap": (
        {"drop_events": 3, "symbol": "BTCUSDT"},
        "fairprice_crawler_resyncs_total",
        {"reason": "gap"},
    ),
    "truncated": ({"truncated_frames": 3}, "fairprice_crawler_malformed_frames_total", {}),
    "malformed": ({"malformed_frames": 5}, "fairprice_crawler_malformed_frames_total", {}),
    "stale_snapshot": (
        {"stale_snapshots": 1, "drop_events": 1, "symbol": "ETHUSDT"},
        "fairprice_crawler_resyncs_total",
        {"reason": "stale_snapshot"},
    ),
    "rest_5xx": (
        {"rest_errors": 2, "rest_error_status": 503, "drop_events": 1, "symbol": "ETHUSDT"},
        "fairprice_crawler_snapshot_requests_total",
        {"outcome": "error"},
    ),
    "rest_429": (
        {"rest_errors": 1, "rest_error_status": 429, "retry_after": 1, "drop_events": 1},
        "fairprice_crawler_snapshot_requests_total",
        {"outcome": "rate_limited"},
    ),
    "rest_418": (
        {"rest_errors": 1, "rest_error_status": 418, "retry_after": 1, "drop_events": 1},
        "fairprice_crawler_snapshot_requests_total",
        {"outcome": "rate_limited"},
    ),
    "slow_rest": (
        {"rest_delay_s": 0.5, "drop_events": 2, "symbol": "SIM0001USDT"},
        "fairprice_crawler_resyncs_total",
        {"reason": "gap"},
    ),
    "disconnect": ({}, "fairprice_crawler_reconnects_total", {}),
    "server_shutdown": ({}, "fairprice_crawler_handovers_total", {}),
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_crawler_converges_to_the_true_book_after_faults(
    fault: str, simulator: Simulator, nats_settings: NatsSettings, bus: Bus
) -> None:
    plan, metric, labels = FAULTS[fault]
    latest = _Latest()
    await bus.nc.subscribe(Stream.BOOKS.wildcard, cb=latest.on_msg)
    settings = crawler_settings(simulator, nats_settings, publish_every_event=True)
    async with _crawler_with_registry(settings) as registry:
        before = _value(registry, metric, **labels)
        snapshots_before = _value(
            registry, "fairprice_crawler_snapshot_requests_total", outcome="ok"
        )
        if fault == "disconnect":
            simulator.disconnect()
        elif fault == "server_shutdown":
            simulator.server_shutdown(close_after_s=3.0)
        else:
            simulator.set_faults(**plan)
        await eventually(
            lambda: _value(registry, metric, **labels) > before, within=20, what=f"{fault} seen"
        )
        simulator.clear_faults()
        if fault == "server_shutdown":
            # A planned handover: no book noticed it, no snapshot was fetched.
            assert _value(registry, "fairprice_crawler_resyncs_total", reason="gap") == 0
            assert (
                _value(registry, "fairprice_crawler_snapshot_requests_total", outcome="ok")
                == snapshots_before
            )
        await _assert_true_books(simulator, registry, latest)


async def _assert_true_books(
    simulator: Simulator, registry: CollectorRegistry, latest: _Latest
) -> None:
    """Once every symbol is synced again and has published after that, each symbol's latest
    published top 20 equals the simulator's book at the same update id."""
    await eventually(
        lambda: _value(registry, "fairprice_crawler_symbols_synced") == len(SYMBOLS),
        within=30,
        what="all synced again",
    )
    mark = {symbol: latest.books[symbol].update_id for symbol in SYMBOLS}
    await eventually(
        lambda: all(latest.books[s].update_id > mark[s] for s in SYMBOLS),
        within=20,
        what="fresh books",
    )
    for symbol in SYMBOLS:
        book = latest.books[symbol]
        truth = simulator.true_book(symbol, book.update_id, depth=20)
        assert [list(level) for level in book.bids] == truth.bids, symbol
        assert [list(level) for level in book.asks] == truth.asks, symbol


async def test_crawler_hands_over_old_connections_without_resyncing(
    simulator: Simulator, nats_settings: NatsSettings, bus: Bus
) -> None:
    """The 24 h limit, shortened: connections are replaced before they expire, books go on."""
    latest = _Latest()
    await bus.nc.subscribe(Stream.BOOKS.wildcard, cb=latest.on_msg)
    settings = crawler_settings(
        simulator, nats_settings, publish_every_event=True, connection_max_age_s=1.0
    )
    async with _crawler_with_registry(settings) as registry:
        await eventually(
            lambda: _value(registry, "fairprice_crawler_handovers_total") >= 2,
            within=20,
            what="two handovers",
        )
        assert _value(registry, "fairprice_crawler_resyncs_total", reason="gap") == 0
        assert _value(registry, "fairprice_crawler_reconnects_total") == 0
        await _assert_true_books(simulator, registry, latest)


async def test_feeds_bucket_adds_and_removes_symbols_live(
    simulator: Simulator, nats_settings: NatsSettings, bus: Bus
) -> None:
    latest = _Latest()
    await bus.nc.subscribe(Stream.BOOKS.wildcard, cb=latest.on_msg)
    port = _free_port()
    settings = crawler_settings(
        simulator,
        nats_settings,
        symbols=["BTCUSDT"],
        http=HttpSettings(host="127.0.0.1", port=port),
    )
    kv = await open_bucket(bus.js, Bucket.FEEDS)
    async with _crawler_with_registry(settings) as registry:
        assert _value(registry, "fairprice_crawler_symbols_owned") == 1
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/readyz")).status_code == 200
            assert "fairprice_crawler_events_applied_total" in (await http.get("/metrics")).text
        await kv.put("default.eth", encode_feed(Feed(symbols=["ethusdt", "SIM0003USDT"])))
        await kv.put("default.other", encode_feed(Feed(exchange="kraken", symbols=["XBTUSD"])))
        await eventually(
            lambda: {"ETHUSDT", "SIM0003USDT"} <= set(latest.books), within=20, what="new books"
        )
        assert _value(registry, "fairprice_crawler_symbols_owned") == 3
        await kv.put("default.eth", encode_feed(Feed(symbols=["ETHUSDT"], enabled=False)))
        await eventually(
            lambda: _value(registry, "fairprice_crawler_symbols_owned") == 1,
            within=20,
            what="feed disabled",
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_recorded_traffic_replays_to_the_published_books(
    simulator: Simulator, nats_settings: NatsSettings, bus: Bus, tmp_path: Path
) -> None:
    """--record writes what the crawler saw; replaying it offline gives the same books."""
    published: list[Book] = []

    async def on_msg(msg: Msg) -> None:
        published.append(decode(msg.data, Book))

    await bus.nc.subscribe(Stream.BOOKS.wildcard, cb=on_msg)
    settings = crawler_settings(
        simulator, nats_settings, publish_every_event=True, record=tmp_path / "rec"
    )
    async with _crawler_with_registry(settings):
        simulator.set_faults(drop_events=2, symbol="ETHUSDT")  # a resync in the recording
        await eventually(lambda: len(published) > 200, within=20, what="books")
    await bus.nc.flush()
    records = read_recording(tmp_path / "rec")
    assert {r.kind for r in records} >= {"open", "send", "ws", "rest"}
    replayer = Replayer(Binance(), every_event=True)
    replayed = list(replayer.run(records))
    assert replayer.engine.symbols["ETHUSDT"].resyncs["gap"] >= 1

    def key(book: Book) -> tuple[object, ...]:
        return (book.symbol, book.first_update_id, book.update_id, book.bids, book.asks)

    assert [key(b) for b in replayed] == [key(b) for b in published]


async def test_crawler_answers_server_pings(nats_settings: NatsSettings) -> None:
    """The exchange pings every 0.3 s and cuts a connection without a pong within 1 s."""
    settings = SimulatorSection(
        port=0,
        http=HttpSettings(port=0),
        market=MarketSettings(seed=3, symbols=SYMBOLS[:2], generated_symbols=0, tick_ms=50),
        ping_interval_s=0.3,
        pong_timeout_s=1.0,
    )
    async with run_simulator(settings) as sim:
        crawler = crawler_settings(sim, nats_settings, symbols=SYMBOLS[:2])
        async with _crawler_with_registry(crawler) as registry:
            # About 4 s of events: a dozen pings.
            await eventually(
                lambda: _value(registry, "fairprice_crawler_events_applied_total") > 150,
                within=30,
                what="events over several ping periods",
            )
            assert _value(registry, "fairprice_crawler_reconnects_total") == 0
        dropped = sim.registry.get_sample_value(
            "fairprice_simulator_disconnects_total", {"reason": "pong_timeout"}
        )
        assert not dropped


@pytest.mark.slow
async def test_many_symbols_share_few_connections_within_the_message_rate(
    nats_settings: NatsSettings,
) -> None:
    symbols = [f"SIM{n:04d}USDT" for n in range(200)]
    settings = SimulatorSection(
        port=0,
        http=HttpSettings(port=0),
        market=MarketSettings(
            seed=5, symbols=[], generated_symbols=200, tick_ms=200, depth_levels=40
        ),
    )
    async with run_simulator(settings) as sim:
        crawler = crawler_settings(
            sim,
            nats_settings,
            symbols=symbols,
            streams_per_connection=90,
            streams_per_message=40,
            snapshot_limit=100,
            snapshot_concurrency=4,
        )
        async with _crawler_with_registry(crawler) as registry:
            assert _value(registry, "fairprice_crawler_symbols_synced") == 200
            assert _value(registry, "fairprice_crawler_connections") == 3  # 90 + 90 + 20
            assert _value(registry, "fairprice_crawler_reconnects_total") == 0
            # exchangeInfo (the weight limit), then one 100-level snapshot per symbol.
            assert _value(registry, "fairprice_crawler_snapshot_weight_total") == 20 + 200 * 5
        closed = sim.registry.get_sample_value(
            "fairprice_simulator_disconnects_total", {"reason": "message_rate"}
        )
        assert not closed


async def test_quiet_markets_become_synced(nats_settings: NatsSettings) -> None:
    """Symbols whose book never changes send no diff event; the crawler still gets ready."""
    settings = SimulatorSection(
        port=0,
        http=HttpSettings(port=0),
        market=MarketSettings(
            seed=3, symbols=SYMBOLS[:2], generated_symbols=0, event_probability=0
        ),
    )
    async with run_simulator(settings) as sim:
        crawler = crawler_settings(sim, nats_settings, symbols=SYMBOLS[:2], quiet_snapshot_s=0.5)
        async with _crawler_with_registry(crawler) as registry:
            assert _value(registry, "fairprice_crawler_symbols_synced") == 2
            assert _value(registry, "fairprice_crawler_events_applied_total") == 0


async def test_exchange_sim_publishes_under_its_own_name(
    simulator: Simulator, nats_settings: NatsSettings, bus: Bus
) -> None:
    latest = _Latest()
    await bus.nc.subscribe("books.sim.>", cb=latest.on_msg)
    settings = crawler_settings(simulator, nats_settings, exchange="sim", symbols=["BTCUSDT"])
    async with _crawler_with_registry(settings):
        await eventually(lambda: "BTCUSDT" in latest.books, within=20, what="books.sim.BTCUSDT")
    assert latest.books["BTCUSDT"].exchange == "sim"


def test_an_unknown_exchange_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="known: binance, sim"):
        exchange_for("kraken")


async def test_background_refreshes_keep_books_flowing(
    simulator: Simulator, nats_settings: NatsSettings, bus: Bus
) -> None:
    latest = _Latest()
    await bus.nc.subscribe(Stream.BOOKS.wildcard, cb=latest.on_msg)
    settings = crawler_settings(simulator, nats_settings, publish_every_event=True, refresh_s=0.5)
    async with _crawler_with_registry(settings) as registry:
        await eventually(
            lambda: (
                _value(registry, "fairprice_crawler_refreshes_total", outcome="ok")
                >= 2 * len(SYMBOLS)
            ),
            within=20,
            what="every book refreshed twice",
        )
        assert _value(registry, "fairprice_crawler_refreshes_total", outcome="corrected") == 0
        assert _value(registry, "fairprice_crawler_resyncs_total", reason="gap") == 0
        await _assert_true_books(simulator, registry, latest)


@pytest.mark.slow
async def test_crawler_rides_out_a_broker_restart(
    simulator: Simulator, nats_settings: NatsSettings, nats_server: NatsServer
) -> None:
    settings = crawler_settings(simulator, nats_settings, publish_every_event=True)
    async with _crawler_with_registry(settings) as registry:
        await nats_server.restart()
        async with connect_bus(nats_settings, name="pytest-after-restart") as bus:
            latest = _Latest()
            await bus.nc.subscribe(Stream.BOOKS.wildcard, cb=latest.on_msg)
            await eventually(
                lambda: set(latest.books) == set(SYMBOLS), within=30, what="books again"
            )
            await _assert_true_books(simulator, registry, latest)
