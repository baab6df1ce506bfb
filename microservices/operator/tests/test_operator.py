"""The operator end to end: the real kopf runtime against kmock's Kubernetes emulator, and a
real nats-server. The test plays the converter's part by writing the ``latest`` bucket."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from typing import Any

import httpx
import nats.js.errors
import pytest
import yaml
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry

from fairprice.common.bus import Bus
from fairprice.common.errors import StoppedError
from fairprice.common.feeds import Feed, Indicators, decode_feed, encode_feed
from fairprice.common.kv import Bucket, open_bucket
from fairprice.common.messages import Latest, encode
from fairprice.common.settings import NatsSettings
from fairprice.common.testing import eventually
from fairprice.operator.service import run

from .conftest import (
    ROOT,
    ApiServer,
    RunningOperator,
    feeds_path,
    market_feed,
    operator_settings,
    spec_schema,
    with_defaults,
)

MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


async def get_object(k8s: ApiServer, name: str) -> dict[str, Any] | None:
    async with k8s.get(feeds_path(name=name)) as response:
        if response.status == 404:
            return None
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def create(k8s: ApiServer, crd: dict[str, Any], name: str, **spec: Any) -> None:
    body = market_feed(name, with_defaults(spec_schema(crd), spec))
    async with k8s.post(feeds_path(), json=body) as response:
        assert response.status in (200, 201), await response.text()


async def stored_feed(feeds: KeyValue, key: str) -> Feed | None:
    try:
        entry = await feeds.get(key)
    except nats.js.errors.KeyNotFoundError:
        return None
    return decode_feed(entry.value) if entry.value else None


def latest(
    symbol: str,
    price: float,
    *,
    method: str = "mid",
    signal: str | None = None,
    alerts: tuple[str, ...] = (),
) -> bytes:
    now_ms = int(time.time() * 1000)
    return encode(
        Latest(
            exchange="sim",
            symbol=symbol,
            update_id=1,
            event_time_ms=now_ms,
            method=method,
            price=price,
            sma_fast=price + 1,
            sma_slow=price - 1,
            signal=signal,  # type: ignore[arg-type]
            signal_time_ms=now_ms if signal else None,
            alerts=list(alerts),
        )
    )


async def test_operator_feed_lifecycle_and_live_status(
    k8s: ApiServer, crd: dict[str, Any], operator: RunningOperator, bus: Bus
) -> None:
    """Create -> feed in the bucket and a status from the latest values; edit -> the bucket
    follows; delete -> the key is removed and the finalizer released."""
    feeds = await open_bucket(bus.js, Bucket.FEEDS)
    prices = await open_bucket(bus.js, Bucket.LATEST)

    await create(k8s, crd, "majors", exchange="sim", symbols=["BTCUSDT", "ETHUSDT"], method="mid")

    async def feed_written() -> bool:
        return await stored_feed(feeds, "markets.majors") is not None

    await eventually(feed_written, within=15, what="feed in the bucket")
    assert await stored_feed(feeds, "markets.majors") == Feed(
        exchange="sim", symbols=["BTCUSDT", "ETHUSDT"], method="mid"
    )

    async def status(path: str) -> Any:
        obj = await get_object(k8s, "majors")
        value: Any = obj
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    async def status_is(path: str, expected: Any) -> bool:
        return bool(await status(path) == expected)

    await eventually(lambda: status_is("status.summary.synced", "0/2"), within=15, what="0/2")
    conditions = {c["type"]: c for c in await status("status.conditions")}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Degraded"]["reason"] == "NotSynced"
    assert "fairprice.io/feed" in await status("metadata.finalizers")

    await prices.put("sim.BTCUSDT", latest("BTCUSDT", 65000.5, signal="BUY"))
    await eventually(lambda: status_is("status.summary.fairPrice", "65000.5"), within=15)
    assert await status("status.summary.signal") == "BUY"
    assert await status("status.summary.synced") == "1/2"

    await prices.put("sim.ETHUSDT", latest("ETHUSDT", 3200.25))
    await eventually(lambda: status_is("status.summary.synced", "2/2"), within=15)
    conditions = {c["type"]: c for c in await status("status.conditions")}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Degraded"]["status"] == "False"
    eth = (await status("status.symbols"))[1]
    assert eth["symbol"] == "ETHUSDT"
    assert eth["fairPrice"] == "3200.25"
    assert eth["smaFast"] == "3201.25" and eth["smaSlow"] == "3199.25"

    # Edit: the bucket follows the new symbols and the status lists them.
    patch = {"spec": {"symbols": ["BTCUSDT", "SOLUSDT"]}}
    async with k8s.patch(feeds_path(name="majors"), json=patch, headers=MERGE_PATCH) as response:
        assert response.status == 200, await response.text()

    async def edited() -> bool:
        feed = await stored_feed(feeds, "markets.majors")
        return feed is not None and feed.symbols == ["BTCUSDT", "SOLUSDT"]

    await eventually(edited, within=15, what="edited feed in the bucket")
    await eventually(lambda: status_is("status.summary.synced", "1/2"), within=15)
    symbols = [entry["symbol"] for entry in await status("status.symbols")]
    assert symbols == ["BTCUSDT", "SOLUSDT"]

    # Edit the indicators: the bucket follows (the converters apply it from the next candle).
    patch = {"spec": {"indicators": {"interval": "5m", "rsiPeriod": 7, "bollingerStdDevs": 2.5}}}
    async with k8s.patch(feeds_path(name="majors"), json=patch, headers=MERGE_PATCH) as response:
        assert response.status == 200, await response.text()

    async def indicators_edited() -> bool:
        feed = await stored_feed(feeds, "markets.majors")
        return feed is not None and feed.indicators == Indicators(
            interval="5m", rsi_period=7, bollinger_sd=2.5
        )

    await eventually(indicators_edited, within=15, what="edited indicators in the bucket")

    # Delete: the key goes, then kopf removes its finalizer and the object is gone.
    async with k8s.delete(feeds_path(name="majors")) as response:
        assert response.status == 200, await response.text()

    async def gone() -> bool:
        return await get_object(k8s, "majors") is None

    await eventually(gone, within=15, what="object deleted")
    assert await stored_feed(feeds, "markets.majors") is None


async def test_operator_rewrites_a_feed_lost_from_the_bucket(
    k8s: ApiServer, crd: dict[str, Any], operator: RunningOperator, bus: Bus
) -> None:
    """The object is the source of truth: a feed deleted or altered in the bucket behind the
    operator's back is written again by the next status refresh."""
    feeds = await open_bucket(bus.js, Bucket.FEEDS)
    await create(k8s, crd, "btc", exchange="sim", symbols=["BTCUSDT"])
    expected = Feed(exchange="sim", symbols=["BTCUSDT"])

    async def is_expected() -> bool:
        return await stored_feed(feeds, "markets.btc") == expected

    await eventually(is_expected, within=15, what="feed written")
    await feeds.delete("markets.btc")
    await eventually(is_expected, within=15, what="deleted feed written again")
    await feeds.put("markets.btc", encode_feed(Feed(exchange="sim", symbols=["ETHUSDT"])))
    await eventually(is_expected, within=15, what="altered feed written again")
    writes = operator.registry.get_sample_value(
        "fairprice_operator_feed_writes_total", {"op": "put"}
    )
    assert writes is not None and writes >= 3


# What the operator needs from the API server, beyond discovery (which every authenticated
# user may read): docs/operator.md lists it, and the Role must grant it.
NEEDED = {
    ("fairprice.io", "marketfeeds", "list"),
    ("fairprice.io", "marketfeeds", "watch"),
    ("fairprice.io", "marketfeeds", "patch"),
    ("fairprice.io", "marketfeeds/status", "patch"),
    ("", "events", "create"),
}
_VERBS = {"LIST": "list", "WATCH": "watch", "FETCH": "get", "UPDATE": "patch", "CREATE": "create"}
_DISCOVERY = re.compile(r"^/(api|apis)(/[^/]+){0,2}$")


def operator_requests(k8s: ApiServer) -> set[tuple[str, str, str]]:
    """(API group, resource[/subresource], RBAC verb) of every request kopf made, discovery
    documents aside."""
    used: set[tuple[str, str, str]] = set()
    for request in list(k8s):
        if not request.headers.get("User-Agent", "").startswith("kopf/"):
            continue  # the test's own requests
        if request.method == "GET" and _DISCOVERY.match(request.url.path):
            continue
        resource, action = request.resource, request.action
        assert resource is not None and action is not None, request.url
        assert resource.group is not None and resource.plural is not None, request.url
        name = resource.plural + (f"/{request.subresource}" if request.subresource else "")
        used.add((resource.group, name, _VERBS[action.name]))
    return used


def role_grants() -> set[tuple[str, str, str]]:
    docs = yaml.safe_load_all((ROOT / "k8s" / "base" / "operator-rbac.yaml").read_text())
    (role,) = (doc for doc in docs if doc and doc["kind"] == "Role")
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


async def test_operator_records_an_event_per_market_alert_firing_and_resolving(
    k8s: ApiServer, crd: dict[str, Any], operator: RunningOperator, bus: Bus
) -> None:
    """The converter's latest value of a symbol names the alerts firing; each one that starts
    or stops is one Event on its MarketFeed, and the status lists those firing."""
    prices = await open_bucket(bus.js, Bucket.LATEST)
    rule = {"name": "btc-above", "kind": "above", "level": 60000}
    await create(k8s, crd, "alerting", exchange="sim", symbols=["BTCUSDT"], alerts=[rule])
    await prices.put("sim.BTCUSDT", latest("BTCUSDT", 65000.5, alerts=("btc-above",)))

    def events(reason: str) -> list[dict[str, Any]]:
        return [
            r.data
            for r in list(k8s)
            if r.resource and r.resource.plural == "events" and r.data.get("reason") == reason
        ]

    await eventually(lambda: bool(events("MarketAlertFiring")), within=15, what="firing event")
    (firing,) = events("MarketAlertFiring")
    assert firing["involvedObject"]["name"] == "alerting"
    assert firing["message"] == "BTCUSDT: alert btc-above firing"
    assert firing["type"] == "Warning"

    async def listed() -> bool:
        obj = await get_object(k8s, "alerting") or {}
        symbols = obj.get("status", {}).get("symbols") or [{}]
        return bool(symbols[0].get("alerts") == ["btc-above"])

    await eventually(listed, within=15, what="the alert in the status")
    await prices.put("sim.BTCUSDT", latest("BTCUSDT", 59000.0))
    await eventually(lambda: bool(events("MarketAlertResolved")), within=15, what="resolved")
    assert len(events("MarketAlertFiring")) == 1
    (resolved,) = events("MarketAlertResolved")
    assert resolved["message"] == "BTCUSDT: alert btc-above resolved"


async def test_operator_refuses_a_bad_spec_with_an_event_and_needs_only_its_role(
    k8s: ApiServer, crd: dict[str, Any], operator: RunningOperator, bus: Bus
) -> None:
    """A spec that is no feed (the emulator does not validate) never reaches the bucket and is
    reported as a Kubernetes event; every API request of the run is one the Role allows."""
    feeds = await open_bucket(bus.js, Bucket.FEEDS)
    await create(k8s, crd, "bad", symbols=["BTCUSDT"], smaFastSeconds=90, smaSlowSeconds=60)
    await create(k8s, crd, "good", symbols=["BTCUSDT"])

    async def good_written() -> bool:
        return await stored_feed(feeds, "markets.good") is not None

    await eventually(good_written, within=15, what="good feed written")

    def event_posted() -> bool:
        return ("", "events", "create") in operator_requests(k8s)

    await eventually(event_posted, within=15, what="event about the bad spec")

    async def bad_shows_why() -> bool:
        bad = await get_object(k8s, "bad") or {}
        reasons = {c["type"]: c["reason"] for c in bad.get("status", {}).get("conditions", [])}
        return reasons.get("Degraded") == "InvalidSpec"

    await eventually(bad_shows_why, within=15, what="InvalidSpec condition")
    assert await stored_feed(feeds, "markets.bad") is None
    events = [r.data for r in list(k8s) if r.resource and r.resource.plural == "events"]
    assert {event["involvedObject"]["name"] for event in events} == {"bad"}
    assert all("smaFastSeconds" in event["message"] for event in events)

    async with k8s.delete(feeds_path(name="good")) as response:
        assert response.status == 200

    async def good_gone() -> bool:
        return await get_object(k8s, "good") is None

    await eventually(good_gone, within=15, what="good feed deleted")

    used = operator_requests(k8s)
    assert used <= NEEDED, f"requests beyond what docs/operator.md lists: {used - NEEDED}"
    assert NEEDED <= role_grants(), f"the Role lacks {NEEDED - role_grants()}"


async def test_operator_serves_health_readiness_and_metrics(operator: RunningOperator) -> None:
    async with httpx.AsyncClient(base_url=operator.url) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        metrics = (await client.get("/metrics")).text
    assert "fairprice_operator_feed_writes_total" in metrics
    assert "fairprice_operator_status_refreshes_total" in metrics


async def test_operator_stops_while_nats_is_unreachable(k8s: ApiServer) -> None:
    """SIGTERM (``stop``) reaches the connection attempts in kopf's thread: the service ends
    instead of waiting forever for a broker that is not there."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"nats://127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening
        nats_settings = NatsSettings(servers=[dead], reconnect_wait_s=0.05, connect_timeout_s=1)
        settings = operator_settings(nats_settings, str(k8s.url))
        stop = asyncio.Event()
        task = asyncio.create_task(run(settings, stop=stop, registry=CollectorRegistry()))
        await eventually(lambda: not task.done(), within=1)  # it keeps trying
        stop.set()
        with pytest.raises(StoppedError, match="stopped before NATS was reachable"):
            await asyncio.wait_for(task, timeout=30)
