"""InfluxDB's users as the storer's start-up creates them, on a real influxd with
authentication on: the storer may only write, the readers (Grafana, the price API) only read,
and nobody without credentials gets anything."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr

from fairprice.common.local_servers import InfluxServer, run_influxd
from fairprice.common.settings import InfluxSettings
from fairprice.storer.provisioning import provision
from fairprice.storer.settings import ProvisioningSettings

pytestmark = pytest.mark.asyncio(loop_scope="module")

DB = "fair_price"
POINT = f"probe,exchange=sim,symbol=X value=1 {int(time.time() * 1000)}".encode()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def influxd(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InfluxServer]:
    path = tmp_path_factory.mktemp("influxd-auth")
    async with run_influxd(path, admin_password="admin-pw") as server:
        await _provision(server, storer="storer-pw", reader="reader-pw")
        yield server


async def _provision(server: InfluxServer, *, storer: str, reader: str) -> None:
    await provision(
        InfluxSettings(url=server.url, username="storer", password=SecretStr(storer)),
        ProvisioningSettings(
            admin_username=InfluxServer.ADMIN,
            admin_password=SecretStr("admin-pw"),
            reader_password=SecretStr(reader),
        ),
    )


async def _query(server: InfluxServer, auth: tuple[str, str] | None, q: str) -> str:
    """``ok``, or what InfluxDB said against it (its HTTP status or the statement's error)."""
    async with httpx.AsyncClient(base_url=server.url, auth=auth) as client:
        response = await client.post("/query", data={"q": q, "db": DB})
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    return str(response.json()["results"][0].get("error", "ok"))


async def _write(server: InfluxServer, auth: tuple[str, str] | None) -> int:
    async with httpx.AsyncClient(base_url=server.url, auth=auth) as client:
        response = await client.post(
            "/write", params={"db": DB, "rp": "fairprice", "precision": "ms"}, content=POINT
        )
    return response.status_code


STORER = ("storer", "storer-pw")
READER = ("reader", "reader-pw")


async def test_storer_writes_but_cannot_read_or_drop(influxd: InfluxServer) -> None:
    assert await _write(influxd, STORER) == 204
    assert await _query(influxd, STORER, f'DROP DATABASE "{DB}"') != "ok"
    assert await _query(influxd, STORER, 'DROP MEASUREMENT "probe"') != "ok"
    assert await _query(influxd, STORER, "SELECT * FROM probe") != "ok"
    assert await _query(influxd, STORER, "CREATE USER x WITH PASSWORD 'y'") != "ok"
    assert await _query(influxd, STORER, f'CREATE DATABASE "{DB}"') != "ok"


async def test_reader_reads_but_cannot_write_or_drop(influxd: InfluxServer) -> None:
    assert await _write(influxd, STORER) == 204
    assert await _query(influxd, READER, "SELECT * FROM probe") == "ok"
    assert await _write(influxd, READER) == 403
    assert await _query(influxd, READER, f'DROP DATABASE "{DB}"') != "ok"
    assert await _query(influxd, READER, 'DELETE FROM "probe"') != "ok"
    assert await _query(influxd, READER, "SELECT * FROM probe") == "ok"  # still there


async def test_no_credentials_or_wrong_ones_get_nothing(influxd: InfluxServer) -> None:
    assert await _write(influxd, None) == 401
    assert await _query(influxd, None, "SHOW DATABASES") == "HTTP 401"
    assert await _query(influxd, ("reader", "wrong"), "SELECT * FROM probe") == "HTTP 401"


async def test_provisioning_again_rotates_the_passwords(influxd: InfluxServer) -> None:
    """A rotated Secret: the next start-up sets the new passwords; the old ones stop working."""
    await _provision(influxd, storer="storer-new", reader="reader-new")
    try:
        assert await _write(influxd, ("storer", "storer-new")) == 204
        assert await _write(influxd, STORER) == 401
        assert await _query(influxd, ("reader", "reader-new"), "SELECT * FROM probe") == "ok"
    finally:
        await _provision(influxd, storer="storer-pw", reader="reader-pw")
