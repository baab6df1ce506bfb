"""Market alerts reach a real Alertmanager (read back from its v2 API) and its webhook
receiver once each, firing and resolved, and an Alertmanager stopped for 30 s loses none: the
storer in-process, real nats-server, influxd and prometheus-alertmanager."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fairprice.common.messages import Alert, encode
from fairprice.common.publisher import Publisher
from fairprice.common.subjects import alert_msg_id, alerts_subject, book_msg_id
from fairprice.common.testing import (
    AlertmanagerServer,
    WebhookReceiver,
    eventually,
    run_alertmanager,
    run_webhook_receiver,
)
from fairprice.storer.settings import AlertmanagerSettings

from .conftest import Harness


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookReceiver]:
    async with run_webhook_receiver() as receiver:
        yield receiver


@pytest.fixture
async def alertmanager_hooked(
    tmp_path: Path, webhook: WebhookReceiver
) -> AsyncIterator[AlertmanagerServer]:
    async with run_alertmanager(tmp_path / "alertmanager", webhook_url=webhook.url) as server:
        yield server


def _alert(rule: str, state: str, i: int) -> Alert:
    return Alert(
        exchange="sim",
        symbol="AAA",
        rule=rule,
        kind="above",
        severity="critical",
        state=state,  # type: ignore[arg-type]
        update_id=1000 + i,
        event_time_ms=int(time.time() * 1000) - 1000 + i,
        price=101.5,
        summary=f"AAA 101.5 above 100 ({state})",
    )


async def _publish(h: Harness, alerts: list[Alert]) -> None:
    async with Publisher(h.bus.nc) as publisher:
        for alert in alerts:
            book_id = book_msg_id(alert.exchange, alert.symbol, alert.update_id)
            await publisher.publish(
                alerts_subject(alert.exchange, alert.symbol),
                encode(alert),
                alert_msg_id(book_id, alert.rule, alert.state),
            )


async def _active(server: AlertmanagerServer) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        alerts: list[dict[str, Any]] = (await client.get("/api/v2/alerts")).json()
    return alerts


def _settings(h: Harness, server: AlertmanagerServer) -> Any:
    section = h.settings.storer.model_copy(
        update={"alertmanager": AlertmanagerSettings(url=server.url, timeout_s=1.0)}
    )
    return h.settings.model_copy(update={"storer": section})


async def test_an_alert_reaches_alertmanager_and_its_webhook_once_then_resolves(
    h: Harness, alertmanager_hooked: AlertmanagerServer, webhook: WebhookReceiver
) -> None:
    server = alertmanager_hooked
    async with h.storer(_settings(h, server)) as storer:
        firing = _alert("above-100", "firing", 0)
        await _publish(h, [firing, firing])  # a duplicate publish: JetStream keeps one

        async def active() -> bool:
            return any(a["labels"]["rule"] == "above-100" for a in await _active(server))

        await eventually(active, within=20, what="the alert active in alertmanager")
        (seen,) = await _active(server)
        assert seen["labels"] | {} == {
            "alertname": "FairpriceMarketAlert",
            "exchange": "sim",
            "symbol": "AAA",
            "rule": "above-100",
            "kind": "above",
            "severity": "critical",
        }
        assert seen["annotations"]["summary"] == "AAA 101.5 above 100 (firing)"
        await eventually(lambda: bool(webhook.received), within=20, what="the webhook called")
        await _publish(h, [_alert("above-100", "resolved", 5)])

        async def resolved() -> bool:
            statuses = [status for status, _ in webhook.received]
            return "resolved" in statuses and not await _active(server)

        await eventually(resolved, within=20, what="the resolution notified")
        notified = [(status, labels["rule"]) for status, labels in webhook.received]
        assert notified == [("firing", "above-100"), ("resolved", "above-100")]
        assert storer.metric("fairprice_storer_alertmanager_alerts_total", outcome="accepted") == 2
    rows = await h.rows_all('SELECT price, "state" FROM alert GROUP BY rule')
    assert sorted(row["state"] for row in rows) == ["firing", "resolved"]


async def test_alertmanager_down_for_30_s_loses_no_alert(
    h: Harness, alertmanager_hooked: AlertmanagerServer, webhook: WebhookReceiver
) -> None:
    server = alertmanager_hooked
    async with h.storer(_settings(h, server)) as storer:
        server.stop()
        stopped = time.monotonic()
        rules = [f"rule-{n}" for n in range(5)]
        await _publish(h, [_alert(rule, "firing", n) for n, rule in enumerate(rules)])

        async def down_30_s_and_retrying() -> bool:
            retried = storer.metric("fairprice_storer_alertmanager_alerts_total", outcome="retried")
            return time.monotonic() - stopped >= 30 and retried >= 3

        await eventually(down_30_s_and_retrying, within=60, interval=0.5, what="30 s outage")
        assert not webhook.received
        await server.start()

        async def all_active() -> bool:
            return {a["labels"]["rule"] for a in await _active(server)} == set(rules)

        await eventually(all_active, within=30, what="every alert in alertmanager")
        await eventually(lambda: len(webhook.received) == 5, within=30, what="5 notifications")
        notified = sorted((status, labels["rule"]) for status, labels in webhook.received)
        assert notified == [("firing", rule) for rule in rules]
        assert storer.metric("fairprice_storer_alertmanager_alerts_total", outcome="accepted") == 5
