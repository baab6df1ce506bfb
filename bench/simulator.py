"""Benchmark: how many diff events a second the simulator emits, and its CPU per event.

Runs ``fairprice-sim`` as a separate process (so the client's work is not counted) with 1, 100
and 1,000 symbols at 100 ms, subscribes one combined connection to every symbol's
``@depth@100ms`` stream, counts the events received for ``--seconds`` and reads the simulator's
CPU time and memory (RSS) with psutil. Prints a table and writes bench/results/simulator.json.

    uv run python bench/simulator.py [--seconds 10] [--symbols 1 100 1000] [--ceiling]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path

import aiohttp
import psutil

RESULTS = Path(__file__).parent / "results" / "simulator.json"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_up(url: str, deadline: float) -> None:
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url + "/api/v3/ping") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("simulator did not start")
            await asyncio.sleep(0.1)


async def measure(symbols: int, seconds: float, tick_ms: float) -> dict[str, float]:
    port = _free_port()
    env = dict(
        os.environ,
        FAIRPRICE_LOG__LEVEL="WARNING",
        FAIRPRICE_SIMULATOR__HOST="127.0.0.1",
        FAIRPRICE_SIMULATOR__PORT=str(port),
        FAIRPRICE_SIMULATOR__HTTP__PORT="0",
        FAIRPRICE_SIMULATOR__MARKET__SYMBOLS="[]",
        FAIRPRICE_SIMULATOR__MARKET__GENERATED_SYMBOLS=str(symbols),
        FAIRPRICE_SIMULATOR__MARKET__TICK_MS=str(tick_ms),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fairprice.simulator", env=env
    )
    try:
        url = f"http://127.0.0.1:{port}"
        await _wait_up(url, time.monotonic() + 30)
        names = [f"sim{n:04d}usdt@depth@100ms" for n in range(symbols)]
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"ws://127.0.0.1:{port}/stream", max_msg_size=0) as ws,
        ):
            await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": names, "id": 1}))
            reply = await ws.receive_json()
            assert reply == {"result": None, "id": 1}, reply
            # Warm up: let every book get built and the clock settle.
            warm_until = time.monotonic() + 2.0
            while time.monotonic() < warm_until:
                await ws.receive()
            sim = psutil.Process(proc.pid)
            cpu0, t0, events = sum(sim.cpu_times()[:2]), time.monotonic(), 0
            while (now := time.monotonic()) < t0 + seconds:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"unexpected frame {msg.type}")
                events += 1
            cpu = sum(sim.cpu_times()[:2]) - cpu0
            wall = now - t0
            rss_mb = sim.memory_info().rss / 2**20
    finally:
        proc.terminate()
        await proc.wait()
    return {
        "symbols": symbols,
        "tick_ms": tick_ms,
        "target_events_per_s": symbols * 1000.0 / tick_ms,
        "events_per_s": round(events / wall, 1),
        "cpu_share_of_one_core": round(cpu / wall, 3),
        "cpu_us_per_event": round(cpu / events * 1e6, 1) if events else float("nan"),
        "rss_mb": round(rss_mb, 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--symbols", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--tick-ms", type=float, default=100.0)
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="add a row with 1,000 symbols at 20 ms ticks (50,000 events/s asked)",
    )
    args = parser.parse_args()
    runs = [(n, args.tick_ms) for n in args.symbols] + ([(1000, 20.0)] if args.ceiling else [])
    rows = [await measure(n, args.seconds, tick) for n, tick in runs]
    print(
        f"{'symbols':>8} {'tick ms':>8} {'target ev/s':>12} {'events/s':>10} {'sim CPU':>8}"
        f" {'us/event':>9} {'RSS MB':>7}"
    )
    for row in rows:
        print(
            f"{row['symbols']:>8} {row['tick_ms']:>8.0f} {row['target_events_per_s']:>12.0f}"
            f" {row['events_per_s']:>10.1f}"
            f" {row['cpu_share_of_one_core']:>8.3f} {row['cpu_us_per_event']:>9.1f}"
            f" {row['rss_mb']:>7.1f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"simulator": rows, "seconds": args.seconds}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    asyncio.run(main())
