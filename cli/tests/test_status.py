"""`fairprice status` against real NATS and a real health server."""

from __future__ import annotations

from nats.js.api import AckPolicy, ConsumerConfig
from prometheus_client import CollectorRegistry

from fairprice.cli.status import collect_status
from fairprice.common.bus import Bus, ensure_streams
from fairprice.common.health import HealthServer, Readiness
from fairprice.common.publisher import Publisher
from fairprice.common.settings import HttpSettings, NatsSettings, ServiceSettings, StreamsSettings
from fairprice.common.subjects import books_subject


async def test_status_reports_readiness_streams_and_lag(
    bus: Bus, nats_settings: NatsSettings
) -> None:
    await ensure_streams(bus.jsm, StreamsSettings())
    async with Publisher(bus.nc) as publisher:
        for seq in range(25):
            await publisher.publish(books_subject("sim", "A"), b"{}", f"sim:A:{seq}")
    await bus.jsm.add_consumer(
        "BOOKS", ConsumerConfig(durable_name="storer-books", ack_policy=AckPolicy.EXPLICIT)
    )
    readiness = Readiness("nats")
    async with HealthServer(
        HttpSettings(host="127.0.0.1", port=0), CollectorRegistry(), readiness
    ) as server:
        services = {"storer": f"http://127.0.0.1:{server.port}", "crawler": "http://127.0.0.1:9"}
        settings = ServiceSettings(nats=nats_settings)
        health, streams, consumers = await collect_status(settings, services)
        assert [(h.name, h.ready) for h in health] == [("storer", False), ("crawler", False)]
        assert health[0].detail == "not ready: nats"
        assert health[1].detail.startswith("unreachable")
        readiness.set("nats")
        health, _, _ = await collect_status(settings, services)
        assert health[0].ready
    stream_rows = dict(zip(streams.columns[0].cells, streams.columns[1].cells, strict=True))
    assert stream_rows["BOOKS"] == "25"
    consumer_rows = list(zip(*(c.cells for c in consumers.columns), strict=True))
    assert consumer_rows == [("BOOKS", "storer-books", "25", "0", "0")]
