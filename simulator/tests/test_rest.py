"""REST: wire format against the recordings, weights, 429/418, errors."""

from __future__ import annotations

import time

import aiohttp
import pytest

from fairprice.simulator import Simulator

from .conftest import SimFactory, recorded_snapshot, shape, until


async def _get(http: aiohttp.ClientSession, sim: Simulator, path: str) -> tuple[int, dict, object]:
    async with http.get(sim.rest_url + path) as response:
        return response.status, dict(response.headers), await response.json()


async def test_rest_depth_has_binance_shape(sim: Simulator, http: aiohttp.ClientSession) -> None:
    status, headers, body = await _get(http, sim, "/api/v3/depth?symbol=BTCUSDT&limit=1000")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert shape(body) == shape(recorded_snapshot())
    assert isinstance(body, dict)
    assert len(body["bids"]) == 1000 and len(body["asks"]) == 1000


async def test_rest_depth_limit_default_and_max(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    _, _, default = await _get(http, sim, "/api/v3/depth?symbol=BTCUSDT")
    _, _, huge = await _get(http, sim, "/api/v3/depth?symbol=BTCUSDT&limit=9999")
    assert isinstance(default, dict) and isinstance(huge, dict)
    assert len(default["bids"]) == 100
    assert 1000 < len(huge["asks"]) <= 5000


@pytest.mark.parametrize(
    ("limit", "weight"),
    [(1, 5), (100, 5), (101, 25), (500, 25), (501, 50), (1000, 50), (1001, 250), (5000, 250)],
)
async def test_rest_depth_weight_by_limit(
    sim: Simulator, http: aiohttp.ClientSession, limit: int, weight: int
) -> None:
    _, first, _ = await _get(http, sim, f"/api/v3/depth?symbol=ETHUSDT&limit={limit}")
    _, second, _ = await _get(http, sim, "/api/v3/ping")
    assert int(first["X-MBX-USED-WEIGHT-1M"]) == weight
    assert int(second["X-MBX-USED-WEIGHT-1M"]) == weight + 1


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("symbol=NOPEUSDT", -1121),
        ("", -1102),
        ("symbol=BTCUSDT&limit=abc", -1100),
    ],
)
async def test_rest_depth_errors(
    sim: Simulator, http: aiohttp.ClientSession, query: str, code: int
) -> None:
    status, headers, body = await _get(http, sim, f"/api/v3/depth?{query}")
    assert status == 400
    assert isinstance(body, dict) and body["code"] == code and isinstance(body["msg"], str)
    assert list(body) == ["code", "msg"]
    assert "X-MBX-USED-WEIGHT-1M" in headers


async def test_rest_exchange_info(sim: Simulator, http: aiohttp.ClientSession) -> None:
    status, headers, body = await _get(http, sim, "/api/v3/exchangeInfo")
    assert status == 200 and int(headers["X-MBX-USED-WEIGHT-1M"]) == 20
    assert isinstance(body, dict)
    names = [s["symbol"] for s in body["symbols"]]
    assert names[:3] == ["BTCUSDT", "ETHUSDT", "BNBUSDT"] and len(names) == 8
    btc = body["symbols"][0]
    assert (btc["status"], btc["baseAsset"], btc["quoteAsset"]) == ("TRADING", "BTC", "USDT")
    filters = {f["filterType"]: f for f in btc["filters"]}
    tick = filters["PRICE_FILTER"]["tickSize"]
    step = filters["LOT_SIZE"]["stepSize"]
    _, _, depth = await _get(http, sim, "/api/v3/depth?symbol=BTCUSDT&limit=50")
    assert isinstance(depth, dict)
    for price, qty in depth["bids"] + depth["asks"]:
        assert _multiple(price, tick) and _multiple(qty, step)

    _, _, one = await _get(http, sim, "/api/v3/exchangeInfo?symbol=ETHUSDT")
    _, _, two = await _get(http, sim, '/api/v3/exchangeInfo?symbols=["ETHUSDT","BNBUSDT"]')
    assert isinstance(one, dict) and isinstance(two, dict)
    assert [s["symbol"] for s in one["symbols"]] == ["ETHUSDT"]
    assert [s["symbol"] for s in two["symbols"]] == ["ETHUSDT", "BNBUSDT"]
    status, _, bad = await _get(http, sim, "/api/v3/exchangeInfo?symbol=NOPE")
    assert status == 400 and bad == {"code": -1121, "msg": "Invalid symbol."}


def _multiple(value: str, unit: str) -> bool:
    from decimal import Decimal

    return Decimal(value) % Decimal(unit) == 0


async def test_rest_ping(sim: Simulator, http: aiohttp.ClientSession) -> None:
    status, headers, body = await _get(http, sim, "/api/v3/ping")
    assert (status, body, headers["X-MBX-USED-WEIGHT-1M"]) == (200, {}, "1")


async def test_rest_weight_limit_429_then_418_escalating(
    make_sim: SimFactory, http: aiohttp.ClientSession
) -> None:
    sim = await make_sim(weight_limit=12, weight_window_s=3600, ban_base_s=30)
    statuses = []
    for _ in range(3):
        status, headers, body = await _get(http, sim, "/api/v3/depth?symbol=BTCUSDT&limit=5")
        statuses.append(status)
    assert statuses == [200, 200, 429]
    assert isinstance(body, dict) and body["code"] == -1003
    assert int(headers["Retry-After"]) > 0 and headers["X-MBX-USED-WEIGHT-1M"] == "15"

    status, headers, body = await _get(http, sim, "/api/v3/ping")
    assert status == 418 and isinstance(body, dict) and body["code"] == -1003
    first_ban = int(headers["Retry-After"])
    assert 0 < first_ban <= 30
    status, headers, _ = await _get(http, sim, "/api/v3/ping")
    assert status == 418 and 0 < int(headers["Retry-After"]) <= first_ban

    # A second ban of the same IP lasts twice as long.
    sim.limiter._clients["127.0.0.1"].banned_until = 0.0
    sim.limiter._clients["127.0.0.1"].limited_until = 1e18
    status, headers, _ = await _get(http, sim, "/api/v3/ping")
    assert status == 418 and 30 < int(headers["Retry-After"]) <= 60


async def test_rest_weight_window_rolls_over(
    make_sim: SimFactory, http: aiohttp.ClientSession
) -> None:
    """After a 429, a client that waits for the window to end is served again."""
    sim = await make_sim(weight_limit=5, weight_window_s=0.3)
    for _ in range(10):  # two requests (10 of 5) are over, unless a window ends between them
        status, headers, _ = await _get(http, sim, "/api/v3/depth?symbol=BTCUSDT&limit=5")
        if status == 429:
            break
    assert status == 429 and int(headers["Retry-After"]) >= 1
    client = sim.limiter._clients["127.0.0.1"]
    await until(lambda: time.time() >= client.limited_until)
    status, headers, _ = await _get(http, sim, "/api/v3/ping")
    assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "1"


async def test_rest_reset_weights(make_sim: SimFactory, http: aiohttp.ClientSession) -> None:
    sim = await make_sim(weight_limit=5, weight_window_s=3600)
    await _get(http, sim, "/api/v3/depth?symbol=BTCUSDT&limit=5")
    status, _, _ = await _get(http, sim, "/api/v3/ping")
    assert status == 429
    async with http.post(sim.rest_url + "/control/weights/reset") as response:
        assert response.status == 200
    status, _, _ = await _get(http, sim, "/api/v3/ping")
    assert status == 200


async def test_rest_use_keeps_a_symbol_moving_for_a_while(
    make_sim: SimFactory, http: aiohttp.ClientSession
) -> None:
    """A symbol nobody streams moves after a snapshot request, then goes idle."""
    sim = await make_sim(market={"idle_after_s": 0.3})
    _, _, snapshot = await _get(http, sim, "/api/v3/depth?symbol=ETHUSDT&limit=5")
    assert isinstance(snapshot, dict)
    book = sim.book("ETHUSDT")
    await until(lambda: book.last_update_id > snapshot["lastUpdateId"])
    assert sim.status()["books"]["ETHUSDT"]["active"]
    await until(lambda: not sim.status()["books"]["ETHUSDT"]["active"])
    assert "BNBUSDT" not in sim.status()["books"]  # never used: never built


async def test_any_symbol_serves_every_well_formed_symbol_from_the_seed(
    make_sim: SimFactory, http: aiohttp.ClientSession
) -> None:
    """``market.any_symbol``: SOLUSDT has a book and a stream, the same one for the same seed;
    a malformed name is still invalid."""
    first = await make_sim(market={"any_symbol": True, "tick_ms": 100_000.0})
    second = await make_sim(market={"any_symbol": True, "tick_ms": 100_000.0})
    status, _, book = await _get(http, first, "/api/v3/depth?symbol=SOLUSDT&limit=5")
    _, _, again = await _get(http, second, "/api/v3/depth?symbol=SOLUSDT&limit=5")
    assert status == 200 and book == again
    _, _, info = await _get(http, first, "/api/v3/exchangeInfo?symbol=XRPUSDT")
    assert isinstance(info, dict) and info["symbols"][0]["baseAsset"] == "XRP"
    streaming = await make_sim(market={"any_symbol": True})
    async with http.ws_connect(f"{streaming.ws_url}/ws/dogeusdt@depth@100ms") as ws:
        frame = await ws.receive_json(timeout=10)
    assert frame["e"] == "depthUpdate" and frame["s"] == "DOGEUSDT"
    status, _, bad = await _get(http, first, "/api/v3/depth?symbol=sol-usdt")
    assert status == 400 and isinstance(bad, dict) and bad["code"] == -1121


async def test_without_any_symbol_an_unlisted_symbol_is_invalid(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    status, _, body = await _get(http, sim, "/api/v3/depth?symbol=SOLUSDT")
    assert status == 400 and isinstance(body, dict) and body["code"] == -1121
