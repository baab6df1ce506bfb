"""``fairprice-api`` as a real process: a bad setting exits 2 naming its variable; SIGTERM
while a stream client is connected stops it gracefully (the client gets a ``close`` event)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from fairprice.common.bus import Bus
from fairprice.common.kv import Bucket, open_bucket
from fairprice.common.messages import Latest, encode
from fairprice.common.testing import InfluxServer, NatsServer, eventually, nats_env_of

from .conftest import sse_events

COMMAND = Path(sys.executable).with_name("fairprice-api")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FAIRPRICE_")}
    return clean | {"FAIRPRICE_LOG__FORMAT": "json"} | extra


def test_bad_setting_exits_2_naming_the_variable(tmp_path: Path) -> None:
    config = tmp_path / "empty.toml"
    config.write_text("")
    done = subprocess.run(
        [str(COMMAND)],
        env=_env(
            FAIRPRICE_CONFIG=str(config),
            FAIRPRICE_API__PORT="eighty",
            FAIRPRICE_API__STREAM__BUFER="5",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2, done.stderr  # one line per bad setting, no traceback
    assert any(
        line.startswith("fairprice-api: invalid setting api.port (env FAIRPRICE_API__PORT;")
        and "got 'eighty'" in line
        for line in lines
    ), done.stderr
    assert any(
        line.startswith(
            "fairprice-api: invalid setting api.stream.bufer (env FAIRPRICE_API__STREAM__BUFER;"
        )
        and line.endswith("unknown setting; did you mean 'buffer'?")
        for line in lines
    ), done.stderr


async def test_sigterm_stops_gracefully_and_closes_streams(
    nats_server: NatsServer, influxd: InfluxServer, bus: Bus, tmp_path: Path
) -> None:
    latest = Latest(
        exchange="sim", symbol="XUSDT", update_id=1, event_time_ms=1, method="mid", price=1.0,
        sma_fast=None, sma_slow=None,
    )  # fmt: skip
    kv = await open_bucket(bus.js, Bucket.LATEST)
    await kv.put("sim.XUSDT", encode(latest))
    config = tmp_path / "empty.toml"
    config.write_text("")
    port, health = _free_port(), _free_port()
    process = await asyncio.create_subprocess_exec(
        str(COMMAND),
        env=_env(
            FAIRPRICE_CONFIG=str(config),
            **nats_env_of(nats_server, "api"),
            FAIRPRICE_INFLUX__URL=influxd.admin_url,
            FAIRPRICE_API__HOST="127.0.0.1",
            FAIRPRICE_API__PORT=str(port),
            FAIRPRICE_API__HTTP__HOST="127.0.0.1",
            FAIRPRICE_API__HTTP__PORT=str(health),
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(timeout=5) as client:

            async def ready() -> bool:
                try:
                    response = await client.get(f"http://127.0.0.1:{health}/readyz")
                except httpx.HTTPError:
                    return False
                return response.status_code == 200

            await eventually(ready, within=60, what="/readyz of the process")
            url = f"http://127.0.0.1:{port}/v1/stream?symbols=sim.XUSDT"
            async with client.stream("GET", url) as response:
                assert response.status_code == 200
                process.send_signal(signal.SIGTERM)
                events = [e async for e in sse_events(response)]
        assert [e.event for e in events] == ["close"]
        assert "shutting down" in events[0].data
        output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, output.decode()[-2000:]
    logged = [json.loads(line)["event"] for line in output.decode().splitlines() if line[:1] == "{"]
    assert logged[-3:] == ["nats closed", "api stopped", "stopped"]
