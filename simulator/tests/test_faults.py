"""Each fault type, injected in-process and over the control API, is observable by a client."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from fairprice.simulator import Simulator

from .conftest import SimFactory, until


async def _control(
    http: aiohttp.ClientSession, sim: Simulator, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, sim.rest_url + path, json=body) as response:
        return response.status, await response.json()


async def _diffs(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    out = []
    while len(out) < count:
        msg = await ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        out.append(json.loads(msg.data))
    return out


def _gaps(events: list[dict[str, Any]]) -> int:
    return sum(1 for a, b in zip(events, events[1:], strict=False) if b["U"] != a["u"] + 1)


async def test_faults_drop_events_make_a_gap(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(f"{sim.ws_url}/ws/btcusdt@depth@100ms") as ws:
        before = await _diffs(ws, 5)
        status, state = await _control(
            http, sim, "POST", "/control/faults", {"symbol": "BTCUSDT", "drop_events": 2}
        )
        assert status == 200 and state["drop_events"] == {"BTCUSDT": 2}
        after = await _diffs(ws, 10)
    events = before + after
    assert _gaps(events) == 1
    missing = sum(b["U"] - a["u"] - 1 for a, b in zip(events, events[1:], strict=False))
    assert missing > 0
    assert sim.faults.state()["drop_events"] == {}


async def test_faults_drop_only_the_named_symbol(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    url = f"{sim.ws_url}/stream?streams=btcusdt@depth@100ms/ethusdt@depth@100ms"
    async with http.ws_connect(url) as ws:
        frames = await _diffs(ws, 4)
        sim.set_faults(symbol="ETHUSDT", drop_events=3)
        frames += await _diffs(ws, 40)
    by_symbol: dict[str, list[dict[str, Any]]] = {}
    for frame in frames:
        by_symbol.setdefault(frame["data"]["s"], []).append(frame["data"])
    assert _gaps(by_symbol["BTCUSDT"]) == 0
    assert _gaps(by_symbol["ETHUSDT"]) == 1


async def test_faults_drop_rate(sim: Simulator, http: aiohttp.ClientSession) -> None:
    sim.set_faults(drop_rate=0.5)
    async with http.ws_connect(f"{sim.ws_url}/ws/btcusdt@depth@100ms") as ws:
        events = await _diffs(ws, 20)
    assert _gaps(events) > 0


async def test_faults_malformed_and_truncated_frames(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{sim.ws_url}/ws/btcusdt@depth@100ms") as ws:
        await _diffs(ws, 2)
        sim.set_faults(malformed_frames=1)
        texts = [(await ws.receive(timeout=10)).data for _ in range(4)]
        sim.set_faults(truncated_frames=1)
        texts += [(await ws.receive(timeout=10)).data for _ in range(4)]

    def parse(text: str) -> dict[str, Any] | None:
        try:
            return dict(json.loads(text))
        except ValueError:
            return None

    parsed = [parse(t) for t in texts]
    bad = [i for i, p in enumerate(parsed) if p is None]
    assert len(bad) == 2
    good = [p for p in parsed if p is not None]
    # The malformed frame is an extra frame, the truncated one was an event: one gap.
    assert _gaps(good) == 1


async def test_faults_disconnect_over_control_api(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    async with (
        http.ws_connect(f"{sim.ws_url}/ws/btcusdt@depth@100ms") as one,
        http.ws_connect(f"{sim.ws_url}/ws/ethusdt@depth@100ms") as two,
    ):
        await _diffs(one, 1)
        await _diffs(two, 1)
        status, body = await _control(
            http, sim, "POST", "/control/disconnect", {"symbol": "ETHUSDT"}
        )
        assert (status, body) == (200, {"disconnected": 1})
        while (msg := await two.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT:
            pass
        assert msg.type == aiohttp.WSMsgType.CLOSE
        await _diffs(one, 3)  # the other connection is untouched
        assert not one.closed


async def test_faults_abort_without_close_frame(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{sim.ws_url}/ws/btcusdt@depth@100ms") as ws:
        await _diffs(ws, 1)
        assert sim.disconnect(abort=True) == 1
        while (msg := await ws.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT:
            pass
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    await until(lambda: not sim.hub.connections)


async def test_faults_server_shutdown_event(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(f"{sim.ws_url}/stream?streams=btcusdt@depth@100ms") as ws:
        await _diffs(ws, 1)
        status, body = await _control(
            http, sim, "POST", "/control/shutdown", {"close_after_s": 0.2}
        )
        assert (status, body) == (200, {"notified": 1})
        frames = []
        while (msg := await ws.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT:
            frames.append(json.loads(msg.data))
        assert msg.type == aiohttp.WSMsgType.CLOSE
    shutdown = [f for f in frames if f.get("e") == "serverShutdown"]
    assert len(shutdown) == 1 and list(shutdown[0]) == ["e", "E"]
    assert isinstance(shutdown[0]["E"], int)


async def test_faults_stale_snapshot(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(f"{sim.ws_url}/ws/btcusdt@depth@100ms") as ws:
        events = await _diffs(ws, 30)
        sim.set_faults(stale_snapshots=1, stale_ticks=20)
        async with http.get(f"{sim.rest_url}/api/v3/depth?symbol=BTCUSDT&limit=1000") as r:
            stale = await r.json()
        async with http.get(f"{sim.rest_url}/api/v3/depth?symbol=BTCUSDT&limit=1000") as r:
            fresh = await r.json()
    assert stale["lastUpdateId"] < events[-1]["u"]
    assert fresh["lastUpdateId"] >= events[-1]["u"]
    truth = sim.true_book("BTCUSDT", stale["lastUpdateId"], 1000)
    assert (stale["bids"], stale["asks"]) == (truth.bids, truth.asks)


@pytest.mark.parametrize("status", [429, 418, 500, 503])
async def test_faults_forced_rest_errors(
    sim: Simulator, http: aiohttp.ClientSession, status: int
) -> None:
    code, _ = await _control(
        http,
        sim,
        "POST",
        "/control/faults",
        {"rest_errors": 1, "rest_error_status": status, "retry_after": 7},
    )
    assert code == 200
    async with http.get(f"{sim.rest_url}/api/v3/depth?symbol=BTCUSDT") as response:
        assert response.status == status
        body = await response.json()
        assert list(body) == ["code", "msg"]
        if status in (429, 418):
            assert response.headers["Retry-After"] == "7"
    async with http.get(f"{sim.rest_url}/api/v3/depth?symbol=BTCUSDT") as response:
        assert response.status == 200


async def test_faults_slow_rest(sim: Simulator, http: aiohttp.ClientSession) -> None:
    sim.set_faults(rest_delay_s=30)
    with pytest.raises(TimeoutError):
        async with http.get(
            f"{sim.rest_url}/api/v3/ping", timeout=aiohttp.ClientTimeout(total=0.3)
        ):
            pass
    status, state = await _control(http, sim, "DELETE", "/control/faults")
    assert status == 200 and state["rest_delay_s"] == 0
    async with http.get(f"{sim.rest_url}/api/v3/ping") as response:
        assert response.status == 200


async def test_faults_from_settings(make_sim: SimFactory, http: aiohttp.ClientSession) -> None:
    sim = await make_sim(faults={"rest_error_rate": 1.0, "rest_error_status": 502})
    async with http.get(f"{sim.rest_url}/api/v3/ping") as response:
        assert response.status == 502


async def test_faults_control_rejects_unknown_keys(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    status, body = await _control(http, sim, "POST", "/control/faults", {"dorp_rate": 0.1})
    assert status == 400 and "dorp_rate" in body["error"]


async def test_faults_trend_moves_the_price_of_one_symbol(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    btc, eth = sim.book("BTCUSDT"), sim.book("ETHUSDT")
    status, _ = await _control(
        http, sim, "POST", "/control/faults", {"symbol": "BTCUSDT", "trend_ticks": -30}
    )
    assert status == 200 and btc.trend == -30 and eth.trend == 0
    assert sim.status()["books"]["BTCUSDT"]["trend"] == -30
    await _control(http, sim, "DELETE", "/control/faults")
    assert btc.trend == 0
