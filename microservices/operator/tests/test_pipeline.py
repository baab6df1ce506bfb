"""The whole path a MarketFeed drives, end to end: the operator (real kopf runtime against kmock's
Kubernetes emulator), the crawler against the simulator, the converter, and a real nats-server.

Creating a MarketFeed starts its symbols streaming and its status shows a fair price; editing it
changes what is crawled and how it is priced; deleting it stops the crawling.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import nats.js.errors
import pytest
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry

from fairprice.common.bus import Bus
from fairprice.common.kv import Bucket, open_bucket
from fairprice.common.messages import Book, decode
from fairprice.common.settings import HttpSettings, NatsSettings
from fairprice.common.subjects import Stream
from fairprice.common.testing import eventually
from fairprice.converter.service import run as run_converter
from fairprice.converter.settings import ConverterSection, ConverterSettings
from fairprice.crawler.service import run as run_crawler
from fairprice.crawler.settings import CrawlerSection, CrawlerSettings
from fairprice.simulator.server import Simulator, run_simulator
from fairprice.simulator.settings import MarketSettings, SimulatorSection

from .conftest import (
    ApiServer,
    RunningOperator,
    feeds_path,
    market_feed,
    spec_schema,
    with_defaults,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LOCAL = HttpSettings(host="127.0.0.1", port=0)
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


@contextlib.asynccontextmanager
async def service(
    run: Callable[..., Coroutine[Any, Any, None]], settings: Any, name: str
) -> AsyncIterator[None]:
    """A service's ``run`` in-process, ready, stopped gracefully on exit."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        run(settings, stop=stop, ready=ready, registry=CollectorRegistry()), name=name
    )
    try:
        await eventually(lambda: ready.is_set() or task.done(), within=30, what=f"{name} ready")
        if task.done():
            task.result()
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    settings = SimulatorSection(
        port=0,
        http=LOCAL,
        market=MarketSettings(
            seed=11,
            symbols=["BTCUSDT", "ETHUSDT"],
            generated_symbols=0,
            tick_ms=50,
            idle_after_s=1.0,  # a symbol nobody streams or polls for 1 s shows inactive
        ),
    )
    async with run_simulator(settings) as sim:
        yield sim


@pytest.fixture
async def pipeline(
    simulator: Simulator, nats_settings: NatsSettings, operator: RunningOperator
) -> AsyncIterator[None]:
    """The converter and a crawler of the simulator, both with no symbols of their own: every
    symbol they handle comes from a feed."""
    converter = ConverterSettings(
        nats=nats_settings,
        converter=ConverterSection(
            http=LOCAL,
            latest_interval_s=0.2,
            feeds_refresh_s=0.2,
            heartbeat_s=0.2,
            member_ttl_s=2.0,
        ),
    )
    crawler = CrawlerSettings(
        nats=nats_settings,
        crawler=CrawlerSection(
            http=LOCAL,
            rest_url=simulator.rest_url,
            ws_url=simulator.ws_url,
            symbols=[],
            feeds_refresh_s=0.2,
            reconnect_base_s=0.05,
            reconnect_max_s=0.5,
            snapshot_retry_base_s=0.05,
            snapshot_retry_max_s=0.5,
            heartbeat_s=0.2,
            member_ttl_s=2.0,
        ),
    )
    async with (
        service(run_converter, converter, "converter"),
        service(run_crawler, crawler, "crawler"),
    ):
        yield


class Books:
    """Books seen on ``books.>`` per symbol (a core subscription: no effect on the streams)."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()

    async def on_msg(self, msg: Msg) -> None:
        self.count[decode(msg.data, Book).symbol] += 1


async def test_marketfeed_drives_the_pipeline(
    k8s: ApiServer,
    crd: dict[str, Any],
    simulator: Simulator,
    pipeline: None,
    bus: Bus,
) -> None:
    books = Books()
    await bus.nc.subscribe(Stream.BOOKS.wildcard, cb=books.on_msg)
    feeds = await open_bucket(bus.js, Bucket.FEEDS)

    async def status() -> dict[str, Any]:
        async with k8s.get(feeds_path(name="board")) as response:
            body: dict[str, Any] = await response.json()
            return body.get("status", {}) if response.status == 200 else {}

    async def ready_with(symbol: str, method: str) -> bool:
        found = await status()
        entries = {entry["symbol"]: entry for entry in found.get("symbols", [])}
        conditions = {c["type"]: c["status"] for c in found.get("conditions", [])}
        entry = entries.get(symbol, {})
        return (
            conditions.get("Ready") == "True"
            and entry.get("method") == method
            and float(entry.get("fairPrice", "0")) > 0
        )

    def active(symbol: str) -> bool:
        return bool(simulator.status()["books"].get(symbol, {}).get("active"))

    # Create: BTCUSDT streams, the status shows its fair price by the feed's method.
    spec = {"symbols": ["BTCUSDT"], "method": "mid", "smaFastSeconds": 1, "smaSlowSeconds": 2}
    body = market_feed("board", with_defaults(spec_schema(crd), spec))
    async with k8s.post(feeds_path(), json=body) as response:
        assert response.status in (200, 201)
    await eventually(lambda: books.count["BTCUSDT"] > 0, within=30, what="BTCUSDT books")
    await eventually(lambda: ready_with("BTCUSDT", "mid"), within=30, what="BTCUSDT priced")
    summary = (await status())["summary"]
    assert summary["symbols"] == "BTCUSDT" and summary["synced"] == "1/1"
    assert float(summary["fairPrice"]) > 0
    assert books.count["ETHUSDT"] == 0

    # Edit: ETHUSDT replaces BTCUSDT, priced by microprice.
    patch = {"spec": {"symbols": ["ETHUSDT"], "method": "microprice"}}
    async with k8s.patch(feeds_path(name="board"), json=patch, headers=MERGE_PATCH) as response:
        assert response.status == 200
    await eventually(lambda: books.count["ETHUSDT"] > 0, within=30, what="ETHUSDT books")
    # The crawler drops BTCUSDT in the same step that adds ETHUSDT, which needs a snapshot
    # first: no BTCUSDT book comes after the first ETHUSDT one.
    btc_books = books.count["BTCUSDT"]
    await eventually(lambda: ready_with("ETHUSDT", "microprice"), within=30, what="ETH priced")
    await eventually(lambda: not active("BTCUSDT"), within=30, what="BTCUSDT no longer crawled")
    assert books.count["BTCUSDT"] == btc_books
    assert [entry["symbol"] for entry in (await status())["symbols"]] == ["ETHUSDT"]

    # Delete: the feed leaves the bucket and the crawler stops streaming ETHUSDT.
    async with k8s.delete(feeds_path(name="board")) as response:
        assert response.status == 200

    async def feed_gone() -> bool:
        try:
            await feeds.get("markets.board")
        except nats.js.errors.KeyNotFoundError:
            return True
        return False

    await eventually(feed_gone, within=30, what="feed removed from the bucket")
    await eventually(lambda: not active("ETHUSDT"), within=30, what="ETHUSDT no longer crawled")
