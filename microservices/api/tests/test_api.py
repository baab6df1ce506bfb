"""Every endpoint of the price API against a real pipeline, the error cases, and the live
stream across a NATS restart and a reconnect (``Last-Event-ID``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from nats.js import api as js_api

from fairprice.common.messages import Candle, FairPrice, Latest, Signal, decode, encode
from fairprice.common.subjects import Stream, candle_msg_id, candles_subject, signals_subject
from fairprice.common.testing import eventually

from .conftest import SYMBOLS, Rig, sse_events

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300), pytest.mark.asyncio(loop_scope="module")]

SYM = SYMBOLS[0]
MINUTE_MS = 60_000
# History published by the test into CANDLES and SIGNALS (as the converter would), two days
# back so it never meets the live pipeline's; the storer writes it to InfluxDB.
BASE_MS = (int(time.time() * 1000) - 2 * 86_400_000) // MINUTE_MS * MINUTE_MS


async def _latest(rig: Rig, symbol: str) -> Latest:
    kv = await rig.bus.js.key_value("latest")
    entry = await kv.get(f"sim.{symbol}")
    assert entry.value
    return decode(entry.value, Latest)


async def _known(rig: Rig) -> None:
    async def both() -> bool:
        response = await rig.api.client.get("/v1/prices")
        return {p["symbol"] for p in response.json()["prices"]} >= set(SYMBOLS)

    await eventually(both, within=60, what="both symbols priced")


async def test_prices_list_every_symbol_with_its_latest_value(rig: Rig) -> None:
    await _known(rig)
    response = await rig.api.client.get("/v1/prices")
    assert response.status_code == 200
    prices = {p["symbol"]: p for p in response.json()["prices"]}
    for symbol in SYMBOLS:
        price = prices[symbol]
        assert price["exchange"] == "sim"
        assert price["mid"] is not None and price["spread"] is not None
        assert price["age_s"] >= 0
        assert price["method"] in ("mid", "microprice", "impact")


async def test_price_of_one_symbol_is_the_kv_latest_value(rig: Rig) -> None:
    await _known(rig)
    for path in (f"/v1/prices/sim/{SYM}", f"/v1/prices/sim/{SYM.lower()}"):
        before = await _latest(rig, SYM)
        response = await rig.api.client.get(path)
        after = await _latest(rig, SYM)
        assert response.status_code == 200
        body = response.json()
        assert before.update_id <= body["update_id"] <= after.update_id
        same = before if body["update_id"] == before.update_id else after
        assert (body["price"], body["mid"], body["spread"]) == (same.price, same.mid, same.spread)
        assert (body["sma_fast"], body["sma_slow"]) == (same.sma_fast, same.sma_slow)
        assert body["event_time_ms"] == same.event_time_ms
        assert body["signal"] == same.signal and body["signal_time_ms"] == same.signal_time_ms
        age = time.time() - body["event_time_ms"] / 1000
        assert 0 <= body["age_s"] <= age + 1


async def _publish_history(rig: Rig) -> tuple[list[Candle], list[Signal]]:
    candles = [
        Candle(
            exchange="sim",
            symbol=SYM,
            start_ms=BASE_MS + i * MINUTE_MS,
            open=100 + i,
            high=101 + i,
            low=99 + i,
            close=100.5 + i,
            count=10 + i,
        )  # fmt: skip
        for i in range(7)
    ]
    # One 5-minute candle at the same time as the first minute: another series of `candle`.
    five = msgspec.structs.replace(candles[0], interval="5m", open=1.0, count=50)
    for candle in [*candles, five]:
        await rig.bus.js.publish(
            candles_subject("sim", SYM, candle.interval),
            encode(candle),
            headers={"Nats-Msg-Id": candle_msg_id("sim", SYM, candle.interval, candle.start_ms)},
        )
    # Two strategies at one event time: a page never splits them.
    times = [BASE_MS + 1000, BASE_MS + 2000, BASE_MS + 2000, BASE_MS + 3000, BASE_MS + 4000]
    strategies = ["sma_cross", "sma_cross", "test_other", "sma_cross", "sma_cross"]
    signals = [
        Signal(
            exchange="sim",
            symbol=SYM,
            update_id=n,
            event_time_ms=t,
            strategy=s,
            action="BUY" if n % 2 else "SELL",
            price=100.0 + n,
            sma_fast=1.0 + n,
            sma_slow=2.0,
        )  # fmt: skip
        for n, (t, s) in enumerate(zip(times, strategies, strict=True))
    ]
    for signal in signals:
        await rig.bus.js.publish(
            signals_subject("sim", SYM),
            encode(signal),
            headers={"Nats-Msg-Id": f"test:{signal.event_time_ms}:{signal.strategy}"},
        )
    return candles, signals


async def _pages(rig: Rig, path: str, key: str, params: dict[str, Any]) -> list[list[Any]]:
    pages: list[list[Any]] = []
    while True:
        response = await rig.api.client.get(path, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body[key])
        if body["next_cursor"] is None:
            return pages
        params = params | {"cursor": body["next_cursor"]}


async def test_candles_and_signals_come_from_influxdb_a_page_at_a_time(rig: Rig) -> None:
    await _known(rig)
    candles, signals = await _publish_history(rig)
    window = {"start": BASE_MS // 1000, "end": (BASE_MS + 10 * MINUTE_MS) // 1000}

    async def stored() -> bool:
        c = await rig.api.client.get(f"/v1/candles/sim/{SYM}", params=window | {"limit": 100})
        s = await rig.api.client.get(f"/v1/signals/sim/{SYM}", params=window | {"limit": 100})
        return len(c.json()["candles"]) == 7 and len(s.json()["signals"]) == 5

    await eventually(stored, within=30, what="history stored by the storer")
    pages = await _pages(
        rig, f"/v1/candles/sim/{SYM}", "candles", window | {"interval": "1m", "limit": 3}
    )
    assert [len(p) for p in pages] == [3, 3, 1]
    got = [row for page in pages for row in page]
    assert got == [
        {"time_ms": c.start_ms, "open": c.open, "high": c.high, "low": c.low, "close": c.close,
         "count": c.count}
        for c in candles
    ]  # fmt: skip
    pages = await _pages(rig, f"/v1/signals/sim/{SYM}", "signals", window | {"limit": 2})
    # Rows of one timestamp stay together: the 2nd page would split 2000 ms, so it stops before.
    assert [[r["time_ms"] for r in p] for p in pages] == [
        [BASE_MS + 1000], [BASE_MS + 2000, BASE_MS + 2000], [BASE_MS + 3000, BASE_MS + 4000],
    ]  # fmt: skip
    got = sorted((r["time_ms"], r["strategy"], r["action"], r["price"]) for p in pages for r in p)
    assert got == sorted((s.event_time_ms, s.strategy, s.action, s.price) for s in signals)
    five = await rig.api.client.get(f"/v1/candles/sim/{SYM}", params=window | {"interval": "5m"})
    assert [(c["open"], c["count"]) for c in five.json()["candles"]] == [(1.0, 50)]


async def test_unknown_symbol_is_404_everywhere(rig: Rig) -> None:
    for path in (
        "/v1/prices/sim/NOSUCHUSDT",
        "/v1/candles/sim/NOSUCHUSDT",
        "/v1/signals/sim/NOSUCHUSDT",
        "/v1/stream?symbols=sim.NOSUCHUSDT",
        f"/v1/prices/binance/{SYM}",
    ):
        response = await rig.api.client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "unknown_symbol"
        assert "NOSUCHUSDT" in response.json()["message"] or "binance" in response.json()["message"]


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        (f"/v1/candles/sim/{SYM}?interval=2m", "interval"),
        (f"/v1/candles/sim/{SYM}?limit=0", "limit"),
        (f"/v1/candles/sim/{SYM}?limit=100000", "limit"),
        (f"/v1/signals/sim/{SYM}?start=yesterday", "start"),
        (f"/v1/signals/sim/{SYM}?start=2030-01-02T00:00:00Z&end=2030-01-01T00:00:00Z", "start"),
        (f"/v1/signals/sim/{SYM}?cursor=-5", "cursor"),
        (f"/v1/prices/SIM/{SYM}", "exchange"),
        ("/v1/prices/sim/BTC-USDT", "symbol"),
        ("/v1/stream?symbols=BTCUSDT", "symbols"),
        (f"/v1/stream?symbols=sim.{SYM}&kinds=price,book", "kinds"),
        ("/v1/stream", "symbols"),
    ],
)
async def test_bad_parameters_are_422_naming_the_parameter(
    rig: Rig, path: str, parameter: str
) -> None:
    await _known(rig)
    response = await rig.api.client.get(path)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_parameter"
    assert body["parameter"] == parameter
    assert body["message"].startswith(parameter)


async def test_bad_last_event_id_is_422(rig: Rig) -> None:
    await _known(rig)
    response = await rig.api.client.get(
        f"/v1/stream?symbols=sim.{SYM}", headers={"Last-Event-ID": "yesterday"}
    )
    assert response.status_code == 422
    assert response.json()["parameter"] == "Last-Event-ID"


async def test_health_readiness_and_metrics(rig: Rig) -> None:
    async with httpx.AsyncClient(base_url=rig.api.health_url) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).json() == {"status": "ready"}
        metrics = (await client.get("/metrics")).text
    assert 'fairprice_api_requests_total{route="/v1/prices/{exchange}/{symbol}",status="200"}' in (
        metrics
    )
    assert "fairprice_api_stream_window_messages" in metrics


async def _prices_in_stream(rig: Rig, symbol: str, first: int, last: int) -> list[int]:
    """Update ids of ``symbol``'s prices in PRICES from update id ``first`` to ``last``."""
    config = js_api.ConsumerConfig(
        ack_policy=js_api.AckPolicy.NONE, deliver_policy=js_api.DeliverPolicy.ALL,
        inactive_threshold=30.0, mem_storage=True,
    )  # fmt: skip
    sub = await rig.bus.js.pull_subscribe(
        Stream.PRICES.subject("sim", symbol), durable=None, stream="PRICES", config=config
    )
    ids: list[int] = []
    try:
        while not ids or ids[-1] < last:
            for msg in await sub.fetch(1000, timeout=10):
                ids.append(decode(msg.data, FairPrice).update_id)
    finally:
        await sub.unsubscribe()
    return [i for i in ids if first <= i <= last]


class _Reader:
    """One stream client in the background: every event and the last id it saw."""

    def __init__(self, rig: Rig, symbol: str, last_event_id: str | None = None) -> None:
        self.rig, self.symbol = rig, symbol
        self.prices: list[FairPrice] = []
        self.signals: list[Signal] = []
        self.last_id = last_event_id
        self.closed_with: str | None = None
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
        async with httpx.AsyncClient(base_url=self.rig.api.url, timeout=None) as client:
            url = f"/v1/stream?symbols=sim.{self.symbol}"
            async with client.stream("GET", url, headers=headers) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                async for event in sse_events(response):
                    if event.event == "price":
                        self.prices.append(decode(event.data, FairPrice))
                    elif event.event == "signal":
                        self.signals.append(decode(event.data, Signal))
                    else:
                        self.closed_with = event.event
                        return
                    self.last_id = event.id

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def test_stream_delivers_every_price_in_order_across_a_nats_restart_and_a_reconnect(
    rig: Rig,
) -> None:
    await _known(rig)
    reader = _Reader(rig, SYM)
    await eventually(lambda: len(reader.prices) >= 20, within=30, what="20 prices streamed")
    # The broker restarts under a connected client: the window's tails resume from their
    # next stream sequence, the client's connection to the API stays open.
    rig.pipeline.nats.stop()
    response = await rig.api.client.get(f"/v1/prices/sim/{SYM}")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(rig.api.settings.api.retry_after_s)
    assert response.json()["error"] == "unavailable"
    await rig.pipeline.nats.restart()
    during = len(reader.prices)
    await eventually(
        lambda: len(reader.prices) >= during + 20, within=60, what="prices after the restart"
    )
    # The client goes away and comes back with the id of the last event it saw.
    await reader.stop()
    seen, last_id = list(reader.prices), reader.last_id
    assert last_id is not None
    await eventually(
        lambda: rig_has_new(rig, SYM, seen[-1].update_id), within=30, what="prices while away"
    )
    resumed = _Reader(rig, SYM, last_event_id=last_id)
    await eventually(lambda: len(resumed.prices) >= 20, within=30, what="prices after resuming")
    await resumed.stop()
    got = [p.update_id for p in [*seen, *resumed.prices]]
    expected = await _prices_in_stream(rig, SYM, got[0], got[-1])
    assert got == expected  # every price of the symbol, in order, none twice, none missing
    assert all(p.symbol == SYM for p in [*seen, *resumed.prices])


async def rig_has_new(rig: Rig, symbol: str, update_id: int) -> bool:
    """PRICES holds a price of ``symbol`` after ``update_id``: the client missed it."""
    msg = await rig.bus.jsm.get_last_msg("PRICES", Stream.PRICES.subject("sim", symbol))
    assert msg.data is not None
    return decode(msg.data, FairPrice).update_id > update_id


async def test_influxdb_down_is_503_with_retry_after(rig: Rig) -> None:
    await _known(rig)
    rig.pipeline.influxd.stop()
    try:
        response = await rig.api.client.get(f"/v1/candles/sim/{SYM}")
        assert response.status_code == 503
        assert response.headers["Retry-After"] == str(rig.api.settings.api.retry_after_s)
        assert "InfluxDB" in response.json()["message"]

        async def not_ready() -> bool:
            async with httpx.AsyncClient(base_url=rig.api.health_url) as client:
                readyz = await client.get("/readyz")
            return readyz.status_code == 503 and "influx" in readyz.json()["waiting_for"]

        await eventually(not_ready, within=10, what="/readyz waiting for influx")
    finally:
        await rig.pipeline.influxd.restart()
    response = await rig.api.client.get(f"/v1/candles/sim/{SYM}")
    assert response.status_code == 200


async def _fairprice(rig: Rig, *args: str) -> tuple[int, str, str]:
    command = Path(sys.executable).with_name("fairprice")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRPRICE_")}
    env["FAIRPRICE_CONFIG"] = str(rig.pipeline.workdir / "empty.toml")
    process = await asyncio.create_subprocess_exec(
        str(command), *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_fairprice_price_command_calls_the_api(rig: Rig) -> None:
    await _known(rig)
    code, out, err = await _fairprice(rig, "price", SYM.lower(), "--url", rig.api.url)
    assert code == 0, err
    (line,) = out.splitlines()
    assert line.startswith(f"sim {SYM} ") and " mid " in line and " spread " in line
    code, out, err = await _fairprice(
        rig, "price", SYM, "--exchange", "sim", "--json", "--url", rig.api.url
    )
    assert code == 0, err
    body = json.loads(out)
    assert body["symbol"] == SYM and body["exchange"] == "sim"
    code, out, err = await _fairprice(
        rig, "price", "NOSUCHUSDT", "--exchange", "sim", "--url", rig.api.url
    )
    assert code == 1
    assert "answered 404: no fair price for sim NOSUCHUSDT" in err


def _readme_curls() -> list[str]:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme.split("## The price API", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("curl ")]


async def test_readme_curl_examples_work(rig: Rig) -> None:
    """Each `curl` line of the README's price API section, run by the shell, against this
    pipeline (its address and exchange `sim` in place of the local run's and `binance`)."""
    await _known(rig)
    curls = _readme_curls()
    assert len(curls) == 5
    for line in curls:
        command = (
            line.replace("http://127.0.0.1:8000", rig.api.url)
            .replace("binance.BTCUSDT,binance.ETHUSDT", ",".join(f"sim.{s}" for s in SYMBOLS))
            .replace("binance/BTCUSDT", f"sim/{SYM}")
        )
        streaming = "/v1/stream" in command
        if streaming:
            command = command.replace("curl -sN", "curl -sN --max-time 5")
        process = await asyncio.create_subprocess_shell(
            command + " -w '\\n%{http_code}'", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(process.communicate(), 30)
        body, _, status = out.decode().rpartition("\n")
        assert status == "200", (line, status, body[:300])
        if streaming:
            assert "event: price" in body and f'"symbol":"{SYM}"' in body, line
        else:
            assert json.loads(body), line
