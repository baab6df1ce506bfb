"""The influxd fixture serves the real InfluxDB 1.x HTTP API."""

from __future__ import annotations

import httpx

from fairprice.common.testing import InfluxServer


async def test_influxd_line_written_is_read_back(influxd: InfluxServer) -> None:
    async with httpx.AsyncClient(base_url=influxd.admin_url) as client:
        created = await client.post("/query", data={"q": "CREATE DATABASE t"})
        assert created.status_code == 200
        written = await client.post(
            "/write",
            params={"db": "t", "precision": "ms"},
            content=b"fair_price,exchange=sim,symbol=A price=1.5 1700000000000",
        )
        assert written.status_code == 204, written.text
        result = await client.get(
            "/query", params={"db": "t", "q": "SELECT price FROM fair_price", "epoch": "ms"}
        )
    series = result.json()["results"][0]["series"][0]
    assert series["values"] == [[1700000000000, 1.5]]


async def test_influxd_refuses_a_client_without_credentials(influxd: InfluxServer) -> None:
    """Authentication is on, as in a cluster: only ``admin_url``'s admin gets in."""
    async with httpx.AsyncClient(base_url=influxd.url) as client:
        assert (await client.post("/query", data={"q": "SHOW DATABASES"})).status_code == 401
    async with httpx.AsyncClient(base_url=influxd.admin_url) as client:
        assert (await client.post("/query", data={"q": "SHOW DATABASES"})).status_code == 200
