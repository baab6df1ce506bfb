"""The storer as a real process, killed with SIGKILL mid-stream and started again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fairprice.common.subjects import Stream

if TYPE_CHECKING:
    from conftest import Harness


@pytest.fixture
def spawn(h: Harness, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start ``python -m fairprice.storer`` configured by FAIRPRICE_* only (no config file in
    its working directory); every process started is killed at the end."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


def _start(h: Harness, tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FAIRPRICE_")}
    env.update(
        FAIRPRICE_NATS__SERVERS=json.dumps(h.settings.nats.servers),
        FAIRPRICE_NATS__USER=h.settings.nats.user or "",
        FAIRPRICE_NATS__PASSWORD=h.settings.nats.password.get_secret_value()
        if h.settings.nats.password
        else "",
        FAIRPRICE_INFLUX__URL=h.influxd.admin_url,
        FAIRPRICE_STORER__BATCH_SIZE="500",
        FAIRPRICE_STORER__MAX_DELAY_S="0.05",
        FAIRPRICE_STORER__ACK_WAIT_S="2",
        FAIRPRICE_STORER__HTTP__HOST="127.0.0.1",
        FAIRPRICE_STORER__HTTP__PORT="0",
        FAIRPRICE_LOG__FORMAT="json",
    )
    log = (tmp_path / f"storer-{len(processes)}.log").open("wb")
    processes.append(
        subprocess.Popen(
            [sys.executable, "-m", "fairprice.storer"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    )
    log.close()


async def test_sigkill_mid_batch_then_restart_stores_each_message_once(
    h: Harness, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    books = [h.book(i, symbol=f"S{i % 4}") for i in range(20_000)]
    _start(h, tmp_path, spawn)
    await h.publish(books[:10_000])

    async def writing() -> bool:
        return await h.count("orderbook", "update_id") > 0

    await h.wait_for(writing, what="first points")
    spawn[0].kill()  # SIGKILL: no drain, no nak, acks of the batch in flight lost
    assert spawn[0].wait() == -9
    at_kill = await h.count("orderbook", "update_id")
    assert 0 < at_kill < len(books), at_kill

    await h.publish(books[10_000:])
    _start(h, tmp_path, spawn)
    await h.wait_count("orderbook", "update_id", len(books), within=60)

    async def all_acked() -> bool:
        info = await h.bus.jsm.consumer_info(Stream.BOOKS.value, "storer-books")
        return info.num_pending == 0 and info.num_ack_pending == 0

    await h.wait_for(all_acked, within=30, what="every message acked")
    assert await h.count("orderbook", "update_id") == len(books)
    stored = [row["update_id"] for row in await h.rows_all("SELECT update_id FROM orderbook")]
    assert sorted(stored) == [b.update_id for b in books]
    spawn[1].terminate()
    assert spawn[1].wait(timeout=30) == 0
