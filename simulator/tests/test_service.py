"""``fairprice-sim`` as a service: settings, health endpoints, metrics, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from fairprice.common.errors import SettingsError
from fairprice.common.settings import load_settings
from fairprice.simulator import SimulatorSettings
from fairprice.simulator.__main__ import run


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_service_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIRPRICE_SIMULATOR__MARKET__SEED", "9")
    monkeypatch.setenv("FAIRPRICE_SIMULATOR__MARKET__SYMBOLS", '["XRPUSDT"]')
    monkeypatch.setenv("FAIRPRICE_SIMULATOR__WEIGHT_LIMIT", "100")
    settings = load_settings(SimulatorSettings)
    assert settings.simulator.market.seed == 9
    assert settings.simulator.market.symbols == ["XRPUSDT"]
    assert settings.simulator.weight_limit == 100
    assert (settings.simulator.port, settings.simulator.http.port) == (8090, 8085)


def test_service_bad_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIRPRICE_SIMULATOR__MARKET__LEVELS_PER_EVENT", "[5, 2]")
    with pytest.raises(SettingsError, match="levels_per_event"):
        load_settings(SimulatorSettings)


async def test_service_run_serves_health_and_metrics() -> None:
    port, health = _free_port(), _free_port()
    settings = SimulatorSettings(
        simulator={
            "host": "127.0.0.1",
            "port": port,
            "http": {"host": "127.0.0.1", "port": health},
            "market": {"generated_symbols": 2, "tick_ms": 20.0},
        }
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    registry = CollectorRegistry()
    service = asyncio.create_task(run(settings, stop=stop, ready=ready, registry=registry))
    await asyncio.wait_for(ready.wait(), 10)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{health}/readyz") as response:
            assert response.status == 200
        async with http.get(f"http://127.0.0.1:{port}/api/v3/depth?symbol=BTCUSDT") as response:
            assert response.status == 200
        async with http.ws_connect(f"ws://127.0.0.1:{port}/ws/btcusdt@depth@100ms") as ws:
            await ws.receive(timeout=10)
            async with http.get(f"http://127.0.0.1:{health}/metrics") as response:
                metrics = await response.text()
    assert "fairprice_simulator_connections 1.0" in metrics
    assert 'fairprice_simulator_rest_requests_total{endpoint="depth",status="200"} 1.0' in metrics
    assert "fairprice_simulator_weight_used_total 5.0" in metrics
    assert "fairprice_simulator_frames_sent_total" in metrics
    stop.set()
    await asyncio.wait_for(service, 10)


async def test_service_sigterm_exits_cleanly() -> None:
    port = _free_port()
    env = dict(
        os.environ,
        FAIRPRICE_SIMULATOR__HOST="127.0.0.1",
        FAIRPRICE_SIMULATOR__PORT=str(port),
        FAIRPRICE_SIMULATOR__HTTP__PORT="0",
        FAIRPRICE_SIMULATOR__MARKET__GENERATED_SYMBOLS="1",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fairprice.simulator", env=env, stderr=asyncio.subprocess.PIPE
    )
    up = False

    async def ping() -> None:
        nonlocal up
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/api/v3/ping") as response:
                    up = response.status == 200
        except aiohttp.ClientError:
            up = False

    async def poll() -> None:
        while not up:
            await ping()
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(poll(), 20)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.stderr is not None
    log = (await proc.stderr.read()).decode()
    assert "stopping" in log and "stopped" in log
