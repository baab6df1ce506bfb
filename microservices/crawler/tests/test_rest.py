"""REST snapshot error paths (respx stands in for Binance's REST API only)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from fairprice.common.errors import InvalidMessageError, RateLimitedError, TransientError
from fairprice.common.testing import eventually
from fairprice.crawler.binance import Binance
from fairprice.crawler.budget import WeightBudget
from fairprice.crawler.exchange import DepthEvent, Snapshot
from fairprice.crawler.rest import SnapshotClient
from fairprice.crawler.snapshots import SnapshotFetcher
from fairprice.crawler.sync import SyncEngine
from fairprice.crawler.window import WindowPolicy

BASE = "https://api.binance.com"
DEPTH = f"{BASE}/api/v3/depth"
BODY = {"lastUpdateId": 100, "bids": [["1.00", "2"]], "asks": [["1.10", "3"]]}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=BASE, timeout=1.0) as client:
        yield client


def _client(http: httpx.AsyncClient, budget: int = 6000) -> SnapshotClient:
    return SnapshotClient(Binance(), http, WeightBudget(budget), limit=1000)


@respx.mock
async def test_snapshot_ok_spends_weight_and_reads_the_header(http: httpx.AsyncClient) -> None:
    route = respx.get(DEPTH).respond(json=BODY, headers={"X-MBX-USED-WEIGHT-1M": "1234"})
    client = _client(http)
    snapshot = await client.fetch("BTCUSDT")
    assert snapshot.last_id == 100 and snapshot.bids == [("1.00", "2")]
    assert route.calls.last.request.url.params["limit"] == "1000"
    assert client.budget.used == 1234  # the exchange's count wins over our 50
    assert client.budget.spent_total == 50


@pytest.mark.parametrize("status", [429, 418])
@respx.mock
async def test_rate_limit_blocks_every_request_until_retry_after(
    http: httpx.AsyncClient, status: int
) -> None:
    route = respx.get(DEPTH).respond(status, headers={"Retry-After": "7"})
    client = _client(http)
    with pytest.raises(RateLimitedError) as caught:
        await client.fetch("BTCUSDT")
    assert (caught.value.status, caught.value.retry_after) == (status, 7.0)
    assert client.budget.blocked_for > 6
    # The next request waits for Retry-After instead of hitting the exchange again.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.fetch("ETHUSDT"), timeout=0.3)
    assert route.call_count == 1


@respx.mock
async def test_fetcher_after_429_waits_retry_after_then_succeeds(http: httpx.AsyncClient) -> None:
    """No retry loop: after a 429 the next request comes only once Retry-After has passed."""
    times: list[float] = []
    responses = iter(
        [httpx.Response(429, headers={"Retry-After": "0.5"}), httpx.Response(200, json=BODY)]
    )

    def answer(_request: httpx.Request) -> httpx.Response:
        times.append(time.monotonic())
        return next(responses)

    respx.get(DEPTH).mock(side_effect=answer)
    engine = SyncEngine(Binance())
    outcomes: list[str] = []
    fetcher = SnapshotFetcher(
        engine, _client(http), _no_publish, on_outcome=outcomes.append, retry_base_s=0.01
    )
    engine.request_snapshot = fetcher.request
    engine.add("BTCUSDT")
    async with fetcher:
        engine.on_event(DepthEvent("BTCUSDT", 99, 101, 0, [], []), 0)
        await eventually(lambda: engine.symbols["BTCUSDT"].synced, within=10)
    assert outcomes == ["rate_limited", "ok"]
    assert times[1] - times[0] >= 0.5
    assert dict(engine.symbols["BTCUSDT"].resyncs) == {"initial": 1, "snapshot_failed": 1}


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(500),
        httpx.Response(503, text="<html>busy</html>"),
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.ConnectError("refused"),
        httpx.Response(200, text='{"lastUpdateId": 5, "bids": [["1"'),
        httpx.Response(200, json={"lastUpdateId": "x", "bids": [], "asks": []}),
    ],
    ids=["500", "503", "read-timeout", "connect-timeout", "refused", "truncated", "bad-type"],
)
@respx.mock
async def test_transient_failures_raise_transient_error_without_blocking(
    http: httpx.AsyncClient, answer: httpx.Response | Exception
) -> None:
    respx.get(DEPTH).mock(side_effect=[answer])
    client = _client(http)
    with pytest.raises(TransientError) as caught:
        await client.fetch("BTCUSDT")
    assert not isinstance(caught.value, RateLimitedError)
    assert client.budget.blocked_for == 0


@respx.mock
async def test_fetcher_retries_transient_failures_with_backoff(http: httpx.AsyncClient) -> None:
    route = respx.get(DEPTH).mock(
        side_effect=[httpx.Response(502), httpx.ReadTimeout("slow"), httpx.Response(200, json=BODY)]
    )
    engine = SyncEngine(Binance())
    outcomes: list[str] = []
    fetcher = SnapshotFetcher(
        engine, _client(http), _no_publish, on_outcome=outcomes.append, retry_base_s=0.01
    )
    engine.request_snapshot = fetcher.request
    engine.add("BTCUSDT")
    async with fetcher:
        engine.on_event(DepthEvent("BTCUSDT", 99, 101, 0, [], []), 0)
        await eventually(lambda: engine.symbols["BTCUSDT"].synced, within=10)
    assert outcomes == ["error", "error", "ok"]
    assert route.call_count == 3


async def test_budget_waits_for_the_next_minute_when_spent() -> None:
    budget = WeightBudget(100, clock=lambda: 1_000_020.0)  # frozen 20 s into a minute
    await budget.acquire(60)
    budget.observe(90)  # others on the IP spent more than we did
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(budget.acquire(50), timeout=0.2)
    assert budget.used == 90


async def _no_publish(_books: object) -> None:
    return None


def test_the_request_weight_limit_is_read_among_binances_rate_limits() -> None:
    binance = Binance()
    limits = [
        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50},
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    ]
    body = {"timezone": "UTC", "rateLimits": limits, "symbols": []}
    assert binance.parse_weight_limit(json.dumps(body).encode()) == 6000
    assert binance.parse_weight_limit(json.dumps({"rateLimits": limits[:2]}).encode()) is None
    with pytest.raises(InvalidMessageError):
        binance.parse_weight_limit(b"<html>")


@respx.mock
async def test_a_malformed_exchange_info_is_a_transient_error(http: httpx.AsyncClient) -> None:
    respx.get(f"{BASE}/api/v3/exchangeInfo").respond(200, text="<html>")
    client = _client(http)
    with pytest.raises(TransientError, match="rate limits"):
        await client.weight_limit("BTCUSDT")
    assert client.budget.spent_total == 20


@respx.mock
async def test_fetcher_syncs_new_books_first_then_deepens_windows_then_refreshes(
    http: httpx.AsyncClient,
) -> None:
    asked: list[tuple[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append((request.url.params["symbol"], request.url.params["limit"]))
        return httpx.Response(200, json={"lastUpdateId": 1, "bids": [], "asks": []})

    respx.get(DEPTH).mock(side_effect=answer)
    window = WindowPolicy.for_depth(20, Binance.snapshot_limits)
    engine = SyncEngine(Binance(), window=window)
    for symbol in ("REFRESHED", "DEEPENED", "NEW"):
        engine.add(symbol)
    bids = [(str(1000 - n), "1") for n in range(100)]  # a full 100-level window
    for symbol in ("REFRESHED", "DEEPENED"):
        engine.on_event(DepthEvent(symbol, 1, 1, 0, [], []), 0)
        engine.on_snapshot(symbol, Snapshot(1, bids, [], limit=100))
    fetcher = SnapshotFetcher(engine, _client(http), _no_publish, concurrency=1)
    engine.request_snapshot = fetcher.request
    engine.refresh("REFRESHED")  # asked first ...
    # 80 of DEEPENED's 100 bids go: its window ran thin, it asks for 500 levels.
    engine.on_event(DepthEvent("DEEPENED", 2, 2, 0, [(p, "0") for p, _ in bids[:80]], []), 0)
    engine.on_event(DepthEvent("NEW", 1, 1, 0, [], []), 0)  # ... and the new symbol last
    async with fetcher:
        await eventually(lambda: len(asked) == 3, within=10)
    assert asked == [("NEW", "100"), ("DEEPENED", "500"), ("REFRESHED", "100")]
