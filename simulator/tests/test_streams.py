"""WebSocket: stream formats against the recordings, methods, connection limits."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from fairprice.simulator import Simulator, run_simulator

from .conftest import SimFactory, fast_settings, recorded_frames, shape, until


async def _frames(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[Any]:
    out = []
    while len(out) < count:
        msg = await ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        out.append(json.loads(msg.data))
    return out


def _disconnects(sim: Simulator, reason: str) -> float:
    value = sim.registry.get_sample_value(
        "fairprice_simulator_disconnects_total", {"reason": reason}
    )
    return value or 0.0


async def test_streams_combined_diff_and_ticker_match_recordings(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    url = f"{sim.ws_url}/stream?streams=btcusdt@depth@100ms/btcusdt@bookTicker"
    recorded_diff = next(
        f for f in recorded_frames("@depth@100ms") if f["data"]["b"] and f["data"]["a"]
    )
    recorded_ticker = recorded_frames("@bookTicker")[0]
    async with http.ws_connect(url) as ws:
        frames = await _frames(ws, 60)
    diffs = [f for f in frames if f["stream"] == "btcusdt@depth@100ms"]
    tickers = [f for f in frames if f["stream"] == "btcusdt@bookTicker"]
    assert diffs and tickers and len(diffs) + len(tickers) == 60
    full = next(f for f in diffs if f["data"]["b"] and f["data"]["a"])
    assert shape(full) == shape(recorded_diff)
    assert shape(tickers[0]) == shape(recorded_ticker)
    for previous, current in zip(diffs, diffs[1:], strict=False):
        assert current["data"]["U"] == previous["data"]["u"] + 1
    assert all(f["data"]["s"] == "BTCUSDT" and f["data"]["e"] == "depthUpdate" for f in diffs)
    assert len({f["data"]["u"] - f["data"]["U"] for f in diffs}) > 1


async def test_streams_raw_path_sends_unwrapped(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{sim.ws_url}/ws/ethusdt@depth@100ms") as ws:
        (frame,) = await _frames(ws, 1)
    assert list(frame) == ["e", "E", "s", "U", "u", "b", "a"]
    assert frame["s"] == "ETHUSDT"


@pytest.mark.parametrize("levels", [5, 10, 20])
async def test_streams_partial_book(
    sim: Simulator, http: aiohttp.ClientSession, levels: int
) -> None:
    async with http.ws_connect(f"{sim.ws_url}/ws/bnbusdt@depth{levels}@100ms") as ws:
        first, second = await _frames(ws, 2)
    assert list(first) == ["lastUpdateId", "bids", "asks"]
    assert len(first["bids"]) == levels and len(first["asks"]) == levels
    assert second["lastUpdateId"] >= first["lastUpdateId"]
    truth = sim.true_book("BNBUSDT", second["lastUpdateId"], levels)
    assert (second["bids"], second["asks"]) == (truth.bids, truth.asks)


async def test_streams_slow_diff_spans_ten_ticks(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """``@depth`` (1000 ms) events cover ten ``@depth@100ms`` events: one event per slow tick."""
    url = f"{sim.ws_url}/stream?streams=btcusdt@depth/btcusdt@depth@100ms"
    async with http.ws_connect(url) as ws:
        slow: list[dict[str, Any]] = []
        fast: list[dict[str, Any]] = []
        while len(slow) < 3:
            (frame,) = await _frames(ws, 1)
            (slow if frame["stream"] == "btcusdt@depth" else fast).append(frame["data"])
    assert slow[1]["U"] == slow[0]["u"] + 1 and slow[2]["U"] == slow[1]["u"] + 1
    inside = [f for f in fast if slow[1]["U"] <= f["U"] and f["u"] <= slow[1]["u"]]
    assert len(inside) == 10
    assert inside[0]["U"] == slow[1]["U"] and inside[-1]["u"] == slow[1]["u"]


async def test_streams_methods_and_replies(
    make_sim: SimFactory, http: aiohttp.ClientSession
) -> None:
    sim = await make_sim(max_incoming_per_s=100)
    async with http.ws_connect(f"{sim.ws_url}/ws") as ws:

        async def call(request: Any) -> Any:
            await ws.send_str(request if isinstance(request, str) else json.dumps(request))
            while True:
                (frame,) = await _frames(ws, 1)
                if "result" in frame or "error" in frame:
                    return frame

        sub = {
            "method": "SUBSCRIBE",
            "params": ["btcusdt@depth@100ms", "ethusdt@bookTicker"],
            "id": 1,
        }
        assert await call(sub) == {"result": None, "id": 1}
        assert await call({"method": "LIST_SUBSCRIPTIONS", "id": 2}) == {
            "result": ["btcusdt@depth@100ms", "ethusdt@bookTicker"],
            "id": 2,
        }
        (event,) = await _frames(ws, 1)
        assert "e" in event or "u" in event  # raw payloads on /ws
        unsub = {"method": "UNSUBSCRIBE", "params": ["ethusdt@bookTicker"], "id": 3}
        assert await call(unsub) == {"result": None, "id": 3}
        assert await call({"method": "LIST_SUBSCRIPTIONS", "id": 4}) == {
            "result": ["btcusdt@depth@100ms"],
            "id": 4,
        }
        assert await call({"method": "GET_PROPERTY", "params": ["combined"], "id": 5}) == {
            "result": False,
            "id": 5,
        }
        await call({"method": "SET_PROPERTY", "params": ["combined", True], "id": 6})
        while "stream" not in (frame := (await _frames(ws, 1))[0]):
            pass
        assert frame["stream"] == "btcusdt@depth@100ms" and frame["data"]["s"] == "BTCUSDT"

        bad = await call({"method": "SUBSCRIBE", "params": ["not a stream"], "id": 7})
        assert bad == {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 7}
        bad = await call({"method": "FLY", "params": [], "id": 8})
        assert bad["error"]["code"] == 2 and bad["id"] == 8
        bad = await call({"method": "LIST_SUBSCRIPTIONS", "id": "x"})
        assert bad["error"] == {
            "code": 2,
            "msg": "Invalid request: request ID must be an unsigned integer",
        }
        bad = await call("{not json")
        assert bad["error"]["code"] == 3
        bad = await call({"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 9})
        assert bad == {"error": {"code": 1, "msg": "Invalid value type: expected Boolean"}, "id": 9}
        bad = await call({"method": "GET_PROPERTY", "params": ["colour"], "id": 10})
        assert bad == {"error": {"code": 0, "msg": "Unknown property"}, "id": 10}


async def test_streams_at_most_1024_streams(sim: Simulator, http: aiohttp.ClientSession) -> None:
    names = [f"sym{n}usdt@depth@100ms" for n in range(1025)]
    async with http.ws_connect(f"{sim.ws_url}/ws") as ws:
        await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": names, "id": 1}))
        reply = await ws.receive_json(timeout=10)
        assert reply["error"]["code"] == 2 and reply["id"] == 1
        await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": names[:1024], "id": 2}))
        assert await ws.receive_json(timeout=10) == {"result": None, "id": 2}
        await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": names[1024:], "id": 3}))
        reply = await ws.receive_json(timeout=10)
        assert reply["error"]["code"] == 2


async def test_streams_1024_streams_in_the_url(sim: Simulator, http: aiohttp.ClientSession) -> None:
    names = ["btcusdt@depth@100ms"] + [f"sym{n:04d}usdt@depth@100ms" for n in range(1023)]
    async with http.ws_connect(f"{sim.ws_url}/stream?streams={'/'.join(names)}") as ws:
        (frame,) = await _frames(ws, 1)
        assert frame["stream"] == "btcusdt@depth@100ms"
        await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
        while "result" not in (reply := (await _frames(ws, 1))[0]):
            pass
        assert reply["result"] == names


async def test_streams_more_than_5_messages_a_second_disconnects(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{sim.ws_url}/ws") as ws:
        for n in range(6):
            await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": n}))
        replies = 0
        while True:
            msg = await ws.receive(timeout=10)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            replies += 1
        assert msg.type == aiohttp.WSMsgType.CLOSE and replies == 5
        assert ws.close_code == 1008


async def test_streams_ping_without_pong_disconnects(
    make_sim: SimFactory, http: aiohttp.ClientSession
) -> None:
    sim = await make_sim(ping_interval_s=0.05, pong_timeout_s=0.3)
    async with http.ws_connect(f"{sim.ws_url}/ws", autoping=False) as ws:
        pings = 0
        while True:
            msg = await ws.receive(timeout=10)
            if msg.type == aiohttp.WSMsgType.PING:
                pings += 1
                continue
            break
        assert msg.type == aiohttp.WSMsgType.CLOSE and pings >= 2
    assert _disconnects(sim, "pong_timeout") == 1


async def test_streams_pong_keeps_connection(
    make_sim: SimFactory, http: aiohttp.ClientSession
) -> None:
    """A client that answers pings outlives many pong timeouts."""
    sim = await make_sim(ping_interval_s=0.05, pong_timeout_s=0.2, max_incoming_per_s=100)
    async with http.ws_connect(f"{sim.ws_url}/ws", autoping=False) as ws:
        pings = 0
        while pings < 20:  # 20 pings = 1 s, five pong timeouts
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.PING
            await ws.pong(msg.data)
            pings += 1
        assert not ws.closed
    assert _disconnects(sim, "pong_timeout") == 0


async def test_streams_connection_lifetime(
    make_sim: SimFactory, http: aiohttp.ClientSession
) -> None:
    sim = await make_sim(connection_lifetime_s=0.3)
    async with http.ws_connect(f"{sim.ws_url}/ws/btcusdt@depth@100ms") as ws:
        while (msg := await ws.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT:
            pass
        assert msg.type == aiohttp.WSMsgType.CLOSE
    await until(lambda: not sim.hub.connections)
    assert _disconnects(sim, "lifetime") == 1


async def test_streams_stop_closes_connections_going_away(http: aiohttp.ClientSession) -> None:
    async with run_simulator(fast_settings()) as sim:
        ws = await http.ws_connect(f"{sim.ws_url}/ws/btcusdt@depth@100ms")
        await _frames(ws, 1)
    while (msg := await ws.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT:
        pass
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001
    await ws.close()


async def test_streams_event_times_of_a_symbol_never_repeat(
    make_sim: SimFactory, http: aiohttp.ClientSession
) -> None:
    """Ticks faster than the clock's millisecond (a loop catching up does that) still give
    every event its own ``E``: consumers key stored books by event time."""
    sim = await make_sim(market={"tick_ms": 0.1})
    async with http.ws_connect(f"{sim.ws_url}/ws/btcusdt@depth@100ms") as ws:
        frames = await _frames(ws, 100)
    times = [f["E"] for f in frames]
    assert all(later > earlier for earlier, later in zip(times, times[1:], strict=False)), times
