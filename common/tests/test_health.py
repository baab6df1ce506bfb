from __future__ import annotations

import httpx
from prometheus_client import CollectorRegistry, Counter

from fairprice.common.health import HealthServer, Readiness
from fairprice.common.settings import HttpSettings


async def test_health_server_answers_all_three_endpoints() -> None:
    registry = CollectorRegistry()
    counter = Counter("fairprice_test_things_total", "Things.", registry=registry)
    counter.inc(3)
    readiness = Readiness("nats", "caught_up")
    async with (
        HealthServer(HttpSettings(host="127.0.0.1", port=0), registry, readiness) as server,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client,
    ):
        assert (await client.get("/healthz")).status_code == 200

        not_ready = await client.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["waiting_for"] == ["nats", "caught_up"]

        readiness.set("nats")
        assert (await client.get("/readyz")).json()["waiting_for"] == ["caught_up"]
        readiness.set("caught_up")
        assert (await client.get("/readyz")).status_code == 200
        readiness.set("nats", False)
        assert (await client.get("/readyz")).status_code == 503

        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert "fairprice_test_things_total 3.0" in metrics.text
