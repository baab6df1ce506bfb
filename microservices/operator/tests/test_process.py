"""``fairprice-operator`` as a real process: it writes a MarketFeed's feed, and SIGTERM stops it
gracefully (kopf runs in a thread, so the service's own signal handler must reach it)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import nats.js.errors

from fairprice.common.bus import Bus
from fairprice.common.kv import Bucket, open_bucket
from fairprice.common.testing import NatsServer, eventually, nats_env_of

from .conftest import ApiServer, feeds_path, market_feed

COMMAND = Path(sys.executable).with_name("fairprice-operator")


async def test_operator_process_writes_feeds_and_stops_on_sigterm(
    k8s: ApiServer, nats_server: NatsServer, bus: Bus
) -> None:
    env = dict(
        os.environ,
        **nats_env_of(nats_server, "operator"),
        FAIRPRICE_OPERATOR__API_SERVER=str(k8s.url),
        FAIRPRICE_OPERATOR__NAMESPACES='["markets"]',
        FAIRPRICE_OPERATOR__HTTP__HOST="127.0.0.1",
        FAIRPRICE_OPERATOR__HTTP__PORT="0",
        FAIRPRICE_LOG__FORMAT="json",
    )
    process = await asyncio.create_subprocess_exec(
        str(COMMAND), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with k8s.post(feeds_path(), json=market_feed("btc", {"symbols": ["BTCUSDT"]})):
            pass
        feeds = await open_bucket(bus.js, Bucket.FEEDS)

        async def written() -> bool:
            try:
                await feeds.get("markets.btc")
            except nats.js.errors.KeyNotFoundError:
                return False
            return True

        await eventually(written, within=30, what="feed written by the process")
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, output.decode()[-2000:]
    events = [json.loads(line)["event"] for line in output.decode().splitlines() if line[:1] == "{"]
    assert events[-3:] == ["nats closed", "operator stopped", "stopped"], output.decode()[-3000:]
