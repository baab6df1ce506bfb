"""The commands as a user runs them: fairprice-crawler --record DIR, SIGTERM, then replay DIR."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fairprice.common.bus import Bus
from fairprice.common.messages import Book, decode
from fairprice.common.subjects import Stream
from fairprice.common.testing import NatsServer, eventually, nats_env_of
from fairprice.simulator.server import Simulator

pytestmark = pytest.mark.e2e


async def test_record_then_replay_from_the_command_line(
    simulator: Simulator, nats_server: NatsServer, bus: Bus, tmp_path: Path
) -> None:
    published: list[Book] = []

    async def on_msg(msg: object) -> None:
        published.append(decode(msg.data, Book))  # type: ignore[attr-defined]

    await bus.nc.subscribe(Stream.BOOKS.wildcard, cb=on_msg)
    env = {
        **os.environ,
        "FAIRPRICE_CONFIG": "",
        "FAIRPRICE_LOG__FORMAT": "json",
        **nats_env_of(nats_server, "crawler"),
        "FAIRPRICE_CRAWLER__REST_URL": simulator.rest_url,
        "FAIRPRICE_CRAWLER__WS_URL": simulator.ws_url,
        "FAIRPRICE_CRAWLER__SYMBOLS": '["BTCUSDT", "ETHUSDT"]',
        "FAIRPRICE_CRAWLER__HTTP__PORT": "0",
    }
    recording = tmp_path / "rec"
    log = tmp_path / "crawler.log"
    with log.open("wb") as out:
        crawler = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "fairprice.crawler",
            "--record",
            str(recording),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    try:
        await eventually(
            lambda: len(published) >= 20 and "synced 2 of 2" in log.read_text(),
            within=30,
            what="books published",
        )
    finally:
        crawler.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(crawler.wait(), 20)
    assert code == 0, log.read_text()

    replay = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fairprice.crawler.replay",
        str(recording),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(replay.communicate(), 60)
    assert replay.returncode == 0, stderr
    books = [decode(line, Book) for line in stdout.splitlines()]
    assert {b.symbol for b in books} == {"BTCUSDT", "ETHUSDT"}
    assert b"BTCUSDT: synced" in stderr
    # Every book the crawler published is one the replay rebuilt, identically.
    rebuilt = {(b.symbol, b.update_id): (b.bids, b.asks) for b in books}
    for book in published:
        assert rebuilt[(book.symbol, book.update_id)] == (book.bids, book.asks)
