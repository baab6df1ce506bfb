"""bench/influx_v2.py, the peer's way into influxd 1.6: as a real process, against real influxd."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fairprice.cli.processes import free_port
from fairprice.common.testing import InfluxServer, eventually

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "influx_v2.py"


@pytest.fixture
async def pass_through(influxd: InfluxServer) -> AsyncIterator[str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), "--port", str(port), "--influx", influxd.admin_url
    )
    url = f"http://127.0.0.1:{port}"

    async def up() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(url + "/metrics")).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        await eventually(up, within=30, what="pass-through up")
        async with httpx.AsyncClient() as client:
            await client.post(influxd.admin_url + "/query", params={"q": "CREATE DATABASE peer"})
        yield url
    finally:
        proc.terminate()
        await proc.wait()


async def test_influx_v2_writes_a_v2_request_into_the_bucket_with_microseconds(
    pass_through: str, influxd: InfluxServer
) -> None:
    """cryptofeed's request (v2 path, ``precision=us``) lands in database ``bucket`` at the
    microsecond it names, and its event time is measured against influxd's answer."""
    receipt_us = int(time.time() * 1_000_000)
    event_s = receipt_us / 1e6 - 0.25
    line = (
        f'book-BINANCE,symbol=BTC-USDT delta=False,bid="{{"1.5":2}}",ask="{{"1.75":1}}",'
        f"timestamp={event_s},receipt_timestamp={receipt_us / 1e6} {receipt_us}"
    )
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            pass_through + "/api/v2/write",
            params={"org": "bench", "bucket": "peer", "precision": "us"},
            headers={"Authorization": "Token none"},
            content=line,
        )
        assert answer.status_code == 204
        rows = (
            await client.get(
                influxd.admin_url + "/query",
                params={"db": "peer", "q": 'SELECT bid FROM "book-BINANCE"', "epoch": "u"},
            )
        ).json()["results"][0]["series"][0]["values"]
        metrics = (await client.get(pass_through + "/metrics")).text
    assert rows == [[receipt_us, '{"1.5":2}']]
    assert 'peer_influx_points_total{status="204"} 1.0' in metrics
    assert "peer_influx_end_to_end_latency_seconds_count 1.0" in metrics
    assert 'peer_influx_end_to_end_latency_seconds_bucket{le="0.2"} 0.0' in metrics


async def test_influx_v2_answers_influxd_refusal_as_it_came(pass_through: str) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            pass_through + "/api/v2/write",
            params={"bucket": "peer", "precision": "us"},
            content="not line protocol",
        )
        metrics = (await client.get(pass_through + "/metrics")).text
    assert answer.status_code == 400
    assert "unable to parse" in answer.text
    assert 'peer_influx_requests_total{status="400"} 1.0' in metrics
    assert "peer_influx_end_to_end_latency_seconds_count 0.0" in metrics
