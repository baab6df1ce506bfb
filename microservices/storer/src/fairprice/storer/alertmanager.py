"""Market alerts to Alertmanager: the ALERTS stream through a durable consumer of its own,
posted to Alertmanager's v2 API (``POST /api/v2/alerts``), acked only once Alertmanager
accepted them.

Each ``Alert`` becomes one Alertmanager alert with the labels ``alertname``
(``FairpriceMarketAlert``), ``exchange``, ``symbol``, ``rule``, ``kind`` and ``severity`` (the
labels identify it, so its resolution finds it), the annotation ``summary``, ``startsAt`` its
event time and ``endsAt`` ``hold_s`` later when it fires, its event time when it resolves.
While Alertmanager is down, unreachable or answering 5xx, the same batch is posted again with
capped exponential backoff and nothing is acked, so no alert is lost; an alert that
Alertmanager refuses (4xx) is a dead letter. Posting twice is harmless: Alertmanager merges
alerts with the same labels.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
from nats.aio.msg import Msg
from prometheus_client import Counter

from fairprice.common.consumer import PullConsumer
from fairprice.common.errors import InvalidMessageError
from fairprice.common.lifecycle import wait_or_stop
from fairprice.common.logs import get_logger
from fairprice.common.messages import Alert, decode
from fairprice.common.subjects import Stream
from fairprice.storer.deadletter import DeadLetters
from fairprice.storer.settings import AlertmanagerSettings, RetrySettings

__all__ = ["ALERTNAME", "AlertmanagerDelivery", "alertmanager_alert"]

log = get_logger(__name__)

ALERTNAME = "FairpriceMarketAlert"
_BATCH = 100


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat().replace("+00:00", "Z")


def alertmanager_alert(alert: Alert, hold_s: float) -> dict[str, object]:
    """The v2 API's ``postableAlert`` of ``alert``."""
    ends_ms = alert.event_time_ms + (round(hold_s * 1000) if alert.state == "firing" else 0)
    return {
        "labels": {
            "alertname": ALERTNAME,
            "exchange": alert.exchange,
            "symbol": alert.symbol,
            "rule": alert.rule,
            "kind": alert.kind,
            "severity": alert.severity,
        },
        "annotations": {"summary": alert.summary, "price": repr(alert.price)},
        "startsAt": _iso(alert.event_time_ms),
        "endsAt": _iso(ends_ms),
    }


class _Refused(Exception):
    """Alertmanager answered 4xx: these alerts will never be accepted."""


class AlertmanagerDelivery:
    """``await delivery.run()`` until ``stop``: ALERTS -> Alertmanager, see module doc."""

    def __init__(
        self,
        consumer: PullConsumer,
        settings: AlertmanagerSettings,
        retry: RetrySettings,
        deadletters: DeadLetters,
        posted: Counter,
        stop: asyncio.Event,
    ) -> None:
        assert settings.url is not None
        self._consumer = consumer
        self._settings = settings
        self._retry = retry.backoff()
        self._deadletters = deadletters
        self._posted = posted
        self._stop = stop
        self._url = settings.url.rstrip("/") + "/api/v2/alerts"

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=self._settings.timeout_s) as client:
            while not self._stop.is_set():
                msgs = await self._consumer.next_batch(_BATCH, 0.5)
                if msgs and not await self._deliver(client, msgs):
                    for msg in msgs:  # stopped while Alertmanager was down: the next run
                        await msg.nak()

    async def _deliver(self, client: httpx.AsyncClient, msgs: list[Msg]) -> bool:
        """Post ``msgs`` until Alertmanager takes them; False if stopped first."""
        postable: list[tuple[Msg, dict[str, object]]] = []
        for msg in msgs:
            try:
                alert = decode(msg.data, Alert)
            except InvalidMessageError as exc:
                await self._deadletters.send(Stream.ALERTS, msg, str(exc))
                await msg.ack()
                continue
            postable.append((msg, alertmanager_alert(alert, self._settings.hold_s)))
        attempt = 0
        while postable:
            try:
                await self._post(client, [body for _, body in postable])
                break
            except _Refused as exc:
                # One refused alert must not hold back the others: post them one by one.
                if len(postable) == 1:
                    msg = postable[0][0]
                    await self._deadletters.send(Stream.ALERTS, msg, str(exc))
                    await msg.ack()
                    self._posted.labels("refused").inc()
                    return True
                for single in postable:
                    if not await self._deliver(client, [single[0]]):
                        return False
                return True
            except (httpx.HTTPError, _Unavailable) as exc:
                self._posted.labels("retried").inc()
                delay = self._retry.delay(attempt)
                log.warning(
                    "alertmanager unavailable, retrying",
                    error=str(exc) or type(exc).__name__,
                    alerts=len(postable),
                    retry_in_s=round(delay, 2),
                )
                if await wait_or_stop(self._stop, delay):
                    return False
                attempt += 1
        for msg, body in postable:
            await msg.ack()
            log.info("alert delivered to alertmanager", **_fields(body))
        self._posted.labels("accepted").inc(len(postable))
        return True

    async def _post(self, client: httpx.AsyncClient, bodies: list[dict[str, object]]) -> None:
        response = await client.post(self._url, json=bodies)
        if response.status_code >= 500:
            raise _Unavailable(f"alertmanager answered {response.status_code}")
        if response.status_code >= 400:
            raise _Refused(f"alertmanager refused ({response.status_code}): {response.text}")


class _Unavailable(Exception):
    """Alertmanager answered 5xx: try again later."""


def _fields(body: dict[str, object]) -> dict[str, object]:
    labels = body["labels"]
    assert isinstance(labels, dict)
    return {
        "symbol": labels["symbol"],
        "rule": labels["rule"],
        "ends_at": body["endsAt"],
    }
