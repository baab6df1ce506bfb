"""Market alerts end to end: a level crossing and a 2 % move made by the simulator on purpose
(``/control/drift``) give exactly one firing and one resolution of each rule in ALERTS, in
InfluxDB and at a real Alertmanager (read back from its API) and its webhook receiver, with a
SIGKILL of the converter between the firings and the resolutions (the price returns while it
is down; the restarted converter resolves them from the books it replays).

The rules reach the converter the way the operator writes them: a feed in the ``feeds`` KV
bucket. Real processes: nats-server, influxd, simulator, crawler, converter, storer, and
prometheus-alertmanager.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from fairprice.cli.processes import Pipeline
from fairprice.common.bus import Bus, connect_bus
from fairprice.common.feeds import AlertRule, Feed, encode_feed
from fairprice.common.kv import Bucket, open_bucket
from fairprice.common.messages import Alert, FairPrice, decode
from fairprice.common.subjects import Stream, prices_subject
from fairprice.common.testing import (
    AlertmanagerServer,
    eventually,
    run_alertmanager,
    run_webhook_receiver,
)

pytestmark = [pytest.mark.e2e]

SYMBOL = "BTCUSDT"


async def _alerts(bus: Bus) -> list[Alert]:
    info = await bus.jsm.stream_info(Stream.ALERTS.value)
    found: list[Alert] = []
    if not info.state.messages:
        return found
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        raw = await bus.jsm.get_msg(Stream.ALERTS.value, seq)
        found.append(decode(raw.data or b"", Alert))
    return found


async def _price(bus: Bus) -> FairPrice:
    raw = await bus.jsm.get_last_msg(Stream.PRICES.value, prices_subject("sim", SYMBOL))
    return decode(raw.data or b"", FairPrice)


async def _am_alerts(server: AlertmanagerServer) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        found: list[dict[str, Any]] = (await client.get("/api/v2/alerts")).json()
    return found


async def _drift(pipeline: Pipeline, percent: float) -> None:
    async with httpx.AsyncClient(base_url=pipeline.simulator_url, timeout=5) as client:
        answer = await client.post(
            "/control/drift", json={"symbol": SYMBOL, "percent": percent, "steps": 10}
        )
    assert answer.status_code == 200, answer.text


async def test_a_crossing_and_a_move_alert_once_each_through_a_converter_kill(
    tmp_path: Path,
) -> None:
    async with (
        run_webhook_receiver() as webhook,
        run_alertmanager(tmp_path / "alertmanager", webhook_url=webhook.url) as alertmanager,
    ):
        env = {
            "converter": {"FAIRPRICE_CONVERTER__FEEDS_REFRESH_S": "0.5"},
            "storer": {"FAIRPRICE_STORER__ALERTMANAGER__URL": alertmanager.url},
        }
        async with Pipeline(tmp_path / "pipeline", symbols=[SYMBOL], env=env) as pipeline:
            await pipeline.wait_ready(120)
            settings = pipeline.nats_settings()
            async with connect_bus(settings, name="e2e-alerts") as bus:
                await eventually(
                    lambda: _has_price(bus), within=60, interval=0.2, what="a first price"
                )
                level = (await _price(bus)).price * 1.005
                rules = (
                    AlertRule(name="above", kind="above", level=level, severity="critical"),
                    AlertRule(name="move", kind="move", percent=1.0, window_seconds=10),
                )
                feeds = await open_bucket(bus.js, Bucket.FEEDS)
                feed = Feed(exchange="sim", symbols=[SYMBOL], alerts=rules)
                await feeds.put("fairprice.btc", encode_feed(feed))

                async def rules_applied() -> bool:
                    # The converter rebuilt the symbol with the rules (its params changed).
                    log = pipeline.replicas("converter")[0].log_path.read_text()
                    return '"parameters changed"' in log or "parameters changed" in log

                await eventually(rules_applied, within=30, interval=0.2, what="rules applied")
                await pipeline.wait_ready(60)
                await _drift(pipeline, 2.0)

                async def fired() -> bool:
                    return {(a.rule, a.state) for a in await _alerts(bus)} == {
                        ("above", "firing"),
                        ("move", "firing"),
                    }

                await eventually(fired, within=30, interval=0.2, what="both rules firing")

                async def active_in_alertmanager() -> bool:
                    active = await _am_alerts(alertmanager)
                    return {(a["labels"]["rule"], a["labels"]["symbol"]) for a in active} == {
                        ("above", SYMBOL),
                        ("move", SYMBOL),
                    }

                await eventually(active_in_alertmanager, within=30, interval=0.2, what="in AM")
                # Killed with both firing; the price comes back while it is down (within the
                # move's window, so the move stays one move); the restarted converter takes
                # the symbol over from PRICES and resolves both, once.
                converter = pipeline.replicas("converter")[0]
                await pipeline.kill(converter)
                await _drift(pipeline, -2.0)
                await pipeline.restart(converter)
                await pipeline.wait_ready(60)

                async def resolved() -> bool:
                    states = {(a.rule, a.state) for a in await _alerts(bus)}
                    return ("above", "resolved") in states and ("move", "resolved") in states

                await eventually(resolved, within=60, interval=0.2, what="both resolved")

                async def notified() -> bool:
                    return len(webhook.received) >= 4 and not await _am_alerts(alertmanager)

                await eventually(notified, within=30, interval=0.2, what="4 notifications")
                events = sorted((a.rule, a.state) for a in await _alerts(bus))
                assert events == [
                    ("above", "firing"),
                    ("above", "resolved"),
                    ("move", "firing"),
                    ("move", "resolved"),
                ]
                sent = sorted((status, labels["rule"]) for status, labels in webhook.received)
                assert sent == [
                    ("firing", "above"),
                    ("firing", "move"),
                    ("resolved", "above"),
                    ("resolved", "move"),
                ]
                assert {labels["symbol"] for _, labels in webhook.received} == {SYMBOL}

                async def stored() -> bool:
                    return len(await _influx_alerts(pipeline)) == 4

                await eventually(stored, within=30, interval=0.5, what="4 alert points")
                # Both converter runs (one log file): each event logged once, none replayed.
                lines = converter.log_path.read_text().splitlines()
                assert sum('"event": "market alert"' in line for line in lines) == 4


async def _has_price(bus: Bus) -> bool:
    try:
        await _price(bus)
    except Exception:  # noqa: BLE001 - not there yet
        return False
    return True


async def _influx_alerts(pipeline: Pipeline) -> list[list[Any]]:
    async with httpx.AsyncClient(base_url=pipeline.influx_url(), timeout=10) as client:
        answer = await client.get(
            "/query", params={"db": "fair_price", "q": 'SELECT "summary", "rule" FROM "alert"'}
        )
    series = answer.json()["results"][0].get("series", [])
    return [row for one in series for row in one["values"]]
