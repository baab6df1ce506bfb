"""Redundancy 2: two crawler processes, one SIGKILLed; BOOKS loses and repeats nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nats.js.errors
import pytest

from fairprice.common.bus import Bus
from fairprice.common.subjects import Stream
from fairprice.common.testing import NatsServer, eventually
from fairprice.simulator.server import Simulator

from .conftest import SYMBOLS, assert_every_update_once, stored_books

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _config(sim: Simulator, nats: NatsServer) -> str:
    """As a cluster runs it: each replica the crawler's NATS user."""
    symbols = ", ".join(f'"{s}"' for s in SYMBOLS)
    return f"""
[log]
format = "json"

[nats]
servers = ["{nats.url}"]
user = "crawler"
password = "{nats.passwords["crawler"]}"
reconnect_wait_s = 0.2

[crawler]
rest_url = "{sim.rest_url}"
ws_url = "{sim.ws_url}"
symbols = [{symbols}]
redundancy = 2
publish_every_event = true
heartbeat_s = 0.2
member_ttl_s = 2.0
handoff_s = 0.5
http = {{ host = "127.0.0.1", port = 0 }}
"""


@pytest.fixture
def replicas(
    simulator: Simulator, nats_server: NatsServer, tmp_path: Path
) -> Iterator[list[tuple[subprocess.Popen[bytes], Path]]]:
    config = tmp_path / "crawler.toml"
    config.write_text(_config(simulator, nats_server))
    env = {**os.environ, "FAIRPRICE_CONFIG": str(config)}
    started = []
    for n in range(2):
        log = tmp_path / f"crawler-{n}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "fairprice.crawler"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=tmp_path,
            )
        started.append((process, log))
    yield started
    for process, _ in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _synced(log: Path) -> bool:
    return f"synced {len(SYMBOLS)} of {len(SYMBOLS)}" in log.read_text(errors="replace")


async def test_killing_one_of_two_replicas_loses_and_duplicates_nothing(
    replicas: list[tuple[subprocess.Popen[bytes], Path]], bus: Bus
) -> None:
    await eventually(
        lambda: all(_synced(log) for _, log in replicas), within=60, what="both replicas synced"
    )
    await eventually(lambda: _has_stream(bus), within=10, what="BOOKS stream")
    start = (await bus.jsm.stream_info(Stream.BOOKS.value)).state.last_seq + 1

    async def published_since(seq: int, count: int) -> bool:
        info = await bus.jsm.stream_info(Stream.BOOKS.value)
        return info.state.last_seq - seq >= count

    await eventually(lambda: published_since(start, 100), within=30, what="books before kill")
    victim, _ = replicas[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    killed_at = (await bus.jsm.stream_info(Stream.BOOKS.value)).state.last_seq
    await eventually(lambda: published_since(killed_at, 200), within=30, what="books after kill")
    survivor, _ = replicas[1]
    assert survivor.poll() is None

    assert_every_update_once(await stored_books(bus, start), SYMBOLS)


async def _has_stream(bus: Bus) -> bool:
    try:
        await bus.jsm.stream_info(Stream.BOOKS.value)
    except nats.js.errors.NotFoundError:
        return False
    return True
