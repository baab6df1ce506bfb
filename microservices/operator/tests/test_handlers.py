"""The kopf handlers called directly (no kopf runtime), against real NATS KV buckets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, cast

import kopf
import nats.js.errors
import pytest
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry

from fairprice.common.bus import Bus
from fairprice.common.feeds import Feed, decode_feed
from fairprice.common.kv import Bucket, open_bucket
from fairprice.common.messages import Latest, encode
from fairprice.common.testing import NatsServer, eventually
from fairprice.operator.handlers import FeedHandlers
from fairprice.operator.latest import LatestReader
from fairprice.operator.metrics import OperatorMetrics
from fairprice.operator.settings import OperatorSection

from .conftest import market_feed


class Harness:
    def __init__(self, bus: Bus, feeds: KeyValue) -> None:
        self.registry = CollectorRegistry()
        self.feeds = feeds
        self.handlers = FeedHandlers(
            feeds, LatestReader(bus.js), OperatorSection(), OperatorMetrics(self.registry)
        )

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def harness(bus: Bus) -> Harness:
    return Harness(bus, await open_bucket(bus.js, Bucket.FEEDS))


def kwargs(body: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """The keyword arguments kopf passes to a handler for ``body`` (those ours use)."""
    view = kopf.Body(cast(kopf.RawBody, body))
    yield from {
        "spec": view.spec,
        "status": view.status,
        "meta": view.meta,
        "namespace": view.metadata.namespace,
        "name": view.metadata.name,
    }.items()


def with_status(body: dict[str, Any], patch: kopf.Patch) -> dict[str, Any]:
    """The object after kopf applied ``patch``'s status (a merge)."""
    return {**body, "status": {**body.get("status", {}), **patch.status}}


async def test_apply_writes_the_feed_and_a_first_status(harness: Harness) -> None:
    body = market_feed("btc", {"exchange": "sim", "symbols": ["BTCUSDT"], "method": "mid"})
    patch = kopf.Patch()
    await harness.handlers.apply(patch=patch, **dict(kwargs(body)))
    entry = await harness.feeds.get("markets.btc")
    assert entry.value is not None
    assert decode_feed(entry.value) == Feed(exchange="sim", symbols=["BTCUSDT"], method="mid")
    assert patch.status["summary"] == {"symbols": "BTCUSDT", "synced": "0/1"}
    assert patch.status["observedGeneration"] == 1
    assert harness.metric("fairprice_operator_feed_writes_total", op="put") == 1


async def test_refresh_patches_only_what_changed(harness: Harness, bus: Bus) -> None:
    body = market_feed("btc", {"exchange": "sim", "symbols": ["BTCUSDT"], "method": "mid"})
    first = kopf.Patch()
    await harness.handlers.apply(patch=first, **dict(kwargs(body)))
    body = with_status(body, first)

    idle = kopf.Patch()
    await harness.handlers.refresh(patch=idle, **dict(kwargs(body)))
    assert not idle, "a refresh with nothing new must not patch"
    assert harness.metric("fairprice_operator_status_refreshes_total", changed="false") == 1

    prices = await open_bucket(bus.js, Bucket.LATEST)
    now_ms = int(time.time() * 1000)
    value = Latest(
        exchange="sim",
        symbol="BTCUSDT",
        update_id=1,
        event_time_ms=now_ms,
        method="mid",
        price=100.5,
        sma_fast=101.0,
        sma_slow=99.0,
    )
    await prices.put("sim.BTCUSDT", encode(value))
    fresh = kopf.Patch()
    await harness.handlers.refresh(patch=fresh, **dict(kwargs(body)))
    assert fresh.status["summary"]["fairPrice"] == "100.5"
    assert fresh.status["summary"]["synced"] == "1/1"
    ready = {c["type"]: c["status"] for c in fresh.status["conditions"]}
    assert ready == {"Ready": "True", "Degraded": "False"}
    assert harness.metric("fairprice_operator_symbols", state="Synced") == 1


async def test_apply_refuses_a_spec_that_cannot_be_a_feed_for_good(harness: Harness) -> None:
    body = market_feed("bad", {"symbols": ["BTCUSDT"], "smaFastSeconds": 90})
    with pytest.raises(kopf.PermanentError, match="smaFastSeconds"):
        await harness.handlers.apply(patch=kopf.Patch(), **dict(kwargs(body)))
    with pytest.raises(nats.js.errors.KeyNotFoundError):
        await harness.feeds.get("markets.bad")
    assert harness.metric("fairprice_operator_errors_total", kind="spec") == 1


async def test_refresh_of_a_refused_spec_says_why_in_the_conditions(harness: Harness) -> None:
    body = market_feed("bad", {"symbols": ["btcusdt"]})
    patch = kopf.Patch()
    await harness.handlers.refresh(patch=patch, **dict(kwargs(body)))
    found = {c["type"]: c for c in patch.status["conditions"]}
    assert (found["Degraded"]["status"], found["Degraded"]["reason"]) == ("True", "InvalidSpec")
    assert "btcusdt" in found["Ready"]["message"]
    again = kopf.Patch()
    await harness.handlers.refresh(patch=again, **dict(kwargs(with_status(body, patch))))
    assert not again, "unchanged conditions must not be patched again"


async def test_remove_deletes_the_key(harness: Harness) -> None:
    body = market_feed("btc", {"symbols": ["BTCUSDT"]})
    await harness.handlers.apply(patch=kopf.Patch(), **dict(kwargs(body)))
    await harness.handlers.remove(**dict(kwargs(body)))
    with pytest.raises(nats.js.errors.KeyNotFoundError):
        await harness.feeds.get("markets.btc")
    assert harness.metric("fairprice_operator_feed_writes_total", op="delete") == 1


async def test_apply_without_nats_is_a_temporary_error(
    harness: Harness, nats_server: NatsServer, bus: Bus
) -> None:
    """kopf retries a temporary error with a delay; the object is not given up on."""
    nats_server.stop()
    body = market_feed("btc", {"symbols": ["BTCUSDT"]})
    with pytest.raises(kopf.TemporaryError):
        await harness.handlers.apply(patch=kopf.Patch(), **dict(kwargs(body)))
    assert harness.metric("fairprice_operator_errors_total", kind="nats") == 1
    await nats_server.start()
    await eventually(lambda: bus.nc.is_connected, within=30, what="reconnected")


async def test_refresh_after_the_stop_does_nothing(bus: Bus) -> None:
    """A timer kopf starts after its stop flag (nothing will stop it) patches nothing and
    touches neither bucket."""
    feeds = await open_bucket(bus.js, Bucket.FEEDS)
    registry = CollectorRegistry()
    handlers = FeedHandlers(
        feeds,
        LatestReader(bus.js),
        OperatorSection(),
        OperatorMetrics(registry),
        stopping=lambda: True,
    )
    patch = kopf.Patch()
    body = market_feed("btc", {"exchange": "sim", "symbols": ["BTCUSDT"]})
    await handlers.refresh(patch=patch, **dict(kwargs(body)))
    assert not patch
    with pytest.raises(nats.js.errors.NoKeysError):
        await feeds.keys()  # the refresh did not write the missing feed back
