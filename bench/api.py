"""The price API on one replica: requests/s of ``GET /v1/prices/{ex}/{sym}``, and how many
concurrent stream clients it serves at 100 symbols x 10 prices/s with p99 delivery <= 100 ms.

    uv run python bench/api.py [--seconds 10] [--concurrency 32] [--symbols-per-client 100]

Real nats-server and influxd on free ports; the API is the real ``fairprice-api`` process
(its own process, as in a pod). The load is on raw sockets: keep-alive requests from this
process (httpx here would be the limit long before the API), and stream clients spread over
``--client-procs`` load processes, which read whole chunks and time the *first* (oldest)
event of each, so a chunk's latency bounds every event in it. Prices are published at 10 per
second per symbol with ``event_time_ms`` = publish time, so delivery latency = receive time -
event time: NATS, the stream window and the SSE write together.

Stream clients double (1, 2, 4, ...) until the p99 exceeds the target, a client is dropped,
or a client misses prices, twice in a row at the same step (one miss is repeated: the machine
is shared); the largest step that met the target is the answer. The load
generator shares the machine (2 cores, with other work on it): it is the limit as often as
the API is, so the figures are a floor. Prints tables and writes bench/results/api.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import socket
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from _report import report

from fairprice.common.bus import Bus, connect_bus, ensure_streams
from fairprice.common.kv import Bucket, open_bucket
from fairprice.common.lifecycle import die_with_parent
from fairprice.common.messages import FairPrice, Latest, encode
from fairprice.common.settings import NatsSettings, StreamsSettings
from fairprice.common.subjects import Stream
from fairprice.common.testing import run_influxd, run_nats

TARGET_P99_MS = 100.0
_EVENT_TIME = re.compile(rb'"event_time_ms":(\d+)')
SYMBOLS = [f"B{n:03d}USDT" for n in range(100)]
RATE_PER_SYMBOL = 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _start_api(
    nats_url: str, influx_url: str, workdir: Path
) -> tuple[asyncio.subprocess.Process, int, int]:
    port, health = _free_port(), _free_port()
    config = workdir / "empty.toml"
    config.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRPRICE_")} | {
        "FAIRPRICE_CONFIG": str(config),
        "FAIRPRICE_NATS__SERVERS": json.dumps([nats_url]),
        "FAIRPRICE_INFLUX__URL": influx_url,
        "FAIRPRICE_API__HOST": "127.0.0.1",
        "FAIRPRICE_API__PORT": str(port),
        "FAIRPRICE_API__HTTP__HOST": "127.0.0.1",
        "FAIRPRICE_API__HTTP__PORT": str(health),
        "FAIRPRICE_API__STREAM__RESUME_WINDOW_S": "0",
        "FAIRPRICE_LOG__LEVEL": "WARNING",
    }
    command = Path(sys.executable).with_name("fairprice-api")
    log = (workdir / "api.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        str(command),
        env=env,
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
        preexec_fn=die_with_parent,  # a killed benchmark leaves no API behind
    )
    async with httpx.AsyncClient() as client:
        deadline = time.monotonic() + 60
        while True:
            try:
                if (await client.get(f"http://127.0.0.1:{health}/readyz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.returncode is not None:
                raise RuntimeError((workdir / "api.log").read_text()[-2000:])
            await asyncio.sleep(0.2)
    return process, port, health


async def _seed_latest(bus: Bus) -> None:
    kv = await open_bucket(bus.js, Bucket.LATEST)
    now = int(time.time() * 1000)
    for symbol in SYMBOLS:
        latest = Latest(
            exchange="bench", symbol=symbol, update_id=1, event_time_ms=now, method="mid",
            price=100.0, sma_fast=100.0, sma_slow=99.0, mid=100.0, spread=0.01,
        )  # fmt: skip
        await kv.put(f"bench.{symbol}", encode(latest))


async def bench_requests(
    port: int, seconds: float, concurrency: int, api_pid: int
) -> dict[str, float]:
    """``concurrency`` keep-alive connections, one request in flight on each, on raw sockets
    (httpx in this process would be the limit long before the API)."""
    latencies: list[float] = []
    errors = 0
    end = time.monotonic() + seconds

    async def connection(n: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = n
        try:
            while time.monotonic() < end:
                symbol = SYMBOLS[i % len(SYMBOLS)]
                i += concurrency
                started = time.perf_counter()
                writer.write(f"GET /v1/prices/bench/{symbol} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                if head.startswith(b"HTTP/1.1 200"):
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1
        finally:
            writer.close()

    api = psutil.Process(api_pid)
    api.cpu_percent()
    started = time.monotonic()
    await asyncio.gather(*(connection(n) for n in range(concurrency)))
    elapsed = time.monotonic() - started
    cpu = api.cpu_percent()
    latencies.sort()
    return {
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "errors": errors,
        "api_cpu_percent": cpu,
    }


async def publish_prices(bus: Bus, stop: asyncio.Event, window: tuple[float, float]) -> int:
    """100 symbols x 10 prices/s into PRICES (core publishes: the stream stores them); how
    many had an event time inside ``window`` (ms)."""
    sent = 0
    tick = 1 / RATE_PER_SYMBOL / 10  # ten ticks per price period, 10 symbols per tick
    update_id = 0
    next_at = time.monotonic()
    while not stop.is_set():
        now_ms = int(time.time() * 1000)
        update_id += 1
        group = update_id % 10
        for symbol in SYMBOLS[group::10]:
            price = FairPrice(
                exchange="bench", symbol=symbol, update_id=update_id, event_time_ms=now_ms,
                method="mid", price=100.0, mid=100.0, microprice=100.0, impact=None,
                spread=0.01, imbalance=0.0,
            )  # fmt: skip
            await bus.nc.publish(Stream.PRICES.subject("bench", symbol), encode(price))
            sent += window[0] <= now_ms < window[1]
        next_at += tick
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return sent


@dataclass
class StreamClient:
    latencies_ms: list[float] = field(default_factory=list)
    events: int = 0
    dropped: bool = False


async def stream_client(
    port: int, symbols: list[str], client: StreamClient, start_at: float, end_at: float
) -> None:
    """One SSE connection; counts and times what arrives between ``start_at`` and ``end_at``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    query = ",".join(f"bench.{s}" for s in symbols)
    writer.write(
        f"GET /v1/stream?symbols={query}&kinds=price HTTP/1.1\r\nHost: x\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    window = (start_at * 1000, end_at * 1000)
    carry = b""  # a read ends anywhere: keep the unfinished event for the next one
    try:
        # Read on for a second after the window: what was published inside it arrives.
        while time.time() < end_at + 1.0:
            try:
                chunk = await asyncio.wait_for(reader.read(1 << 16), 1.0)
            except TimeoutError:
                continue
            if not chunk:
                break
            if b"slow_client" in chunk:
                client.dropped = True
                break
            cut = chunk.rfind(b"\n\n")
            if cut < 0:
                carry += chunk
                continue
            events, carry = carry + chunk[: cut + 2], chunk[cut + 2 :]
            times = [int(t) for t in _EVENT_TIME.findall(events)]
            client.events += sum(window[0] <= t < window[1] for t in times)
            if times and window[0] <= times[0] < window[1]:
                client.latencies_ms.append(time.time() * 1000 - times[0])
    finally:
        writer.close()


async def _clients(
    port: int, symbol_sets: list[list[str]], start_at: float, end_at: float
) -> tuple[list[float], list[int], int]:
    states = [StreamClient() for _ in symbol_sets]
    await asyncio.gather(
        *(stream_client(port, symbols, state, start_at, end_at)
          for symbols, state in zip(symbol_sets, states, strict=True))
    )  # fmt: skip
    latencies = [x for state in states for x in state.latencies_ms]
    return latencies, [state.events for state in states], sum(state.dropped for state in states)


def client_process(
    port: int, symbol_sets: list[list[str]], start_at: float, end_at: float
) -> tuple[list[float], list[int], int]:
    """A load process: its share of the stream clients (one event loop, raw sockets)."""
    return asyncio.run(_clients(port, symbol_sets, start_at, end_at))


async def bench_streams(
    bus: Bus,
    port: int,
    clients: int,
    seconds: float,
    per_client: int,
    api_pid: int,
    pool: ProcessPoolExecutor,
    procs: int,
) -> dict[str, float]:
    sets = [SYMBOLS[(i * per_client) % 100 :][:per_client] or SYMBOLS[:per_client]
            for i in range(clients)]  # fmt: skip
    start_at = time.time() + 3.0  # every client connected and subscribed before timing
    end_at = start_at + seconds
    loop = asyncio.get_running_loop()
    shares = [sets[n::procs] for n in range(procs) if sets[n::procs]]
    running = [
        loop.run_in_executor(pool, client_process, port, share, start_at, end_at)
        for share in shares
    ]
    stop = asyncio.Event()
    await asyncio.sleep(max(0.0, start_at - 1.0 - time.time()))
    publishing = asyncio.create_task(publish_prices(bus, stop, (start_at * 1000, end_at * 1000)))
    await asyncio.sleep(max(0.0, start_at - time.time()))
    api = psutil.Process(api_pid)
    api.cpu_percent()
    await asyncio.sleep(max(0.0, end_at - time.time()))
    cpu = api.cpu_percent()
    await asyncio.sleep(0.2)
    stop.set()
    sent = await publishing
    results = await asyncio.gather(*running)
    latencies = sorted(x for r in results for x in r[0])
    events = [e for r in results for e in r[1]]
    expected = sent * per_client / len(SYMBOLS)
    received = statistics.mean(events)
    return {
        "clients": clients,
        "events_per_s_per_client": received / seconds,
        "received_of_published": received / expected if expected else 0.0,
        "p50_ms": latencies[len(latencies) // 2] if latencies else float("nan"),
        "p99_ms": latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
        "dropped": sum(r[2] for r in results),
        "api_cpu_percent": cpu,
    }


async def main(args: argparse.Namespace, workdir: Path) -> None:
    load = os.getloadavg()
    async with run_nats(workdir / "nats") as nats, run_influxd(workdir / "influxd") as influxd:
        async with connect_bus(NatsSettings(servers=[nats.url]), name="bench-api") as bus:
            await ensure_streams(bus.jsm, StreamsSettings(), (Stream.PRICES, Stream.SIGNALS))
            await _seed_latest(bus)
            process, port, _health = await _start_api(nats.url, influxd.url, workdir)
            context = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(args.client_procs, mp_context=context)
            # Start every load process (and its imports) now, not inside a timed step.
            loop = asyncio.get_running_loop()
            await asyncio.gather(
                *(loop.run_in_executor(pool, time.sleep, 1.0) for _ in range(args.client_procs))
            )
            try:
                requests = await bench_requests(port, args.seconds, args.concurrency, process.pid)
                report(
                    "api-requests",
                    ["endpoint", "connections", "requests/s", "p50 ms", "p99 ms", "errors",
                     "API CPU %"],
                    [[
                        "GET /v1/prices/{ex}/{sym}", args.concurrency, requests["requests_per_s"],
                        requests["p50_ms"], requests["p99_ms"], requests["errors"],
                        requests["api_cpu_percent"],
                    ]],
                    load_average_at_start=os.getloadavg(),
                )  # fmt: skip
                steps = []
                clients = 1
                best = 0
                retried = False
                while clients <= args.max_clients:
                    step = await bench_streams(
                        bus, port, clients, args.seconds, args.symbols_per_client, process.pid,
                        pool, args.client_procs,
                    )  # fmt: skip
                    steps.append(step)
                    ok = (
                        step["p99_ms"] <= TARGET_P99_MS
                        and not step["dropped"]
                        and step["received_of_published"] >= 0.99
                    )
                    print(
                        f"  {clients} clients: p99 {step['p99_ms']:.1f} ms, "
                        f"{step['events_per_s_per_client']:.0f} events/s each, "
                        f"dropped {step['dropped']}, API CPU {step['api_cpu_percent']:.0f}%"
                        f" -> {'ok' if ok else 'over'}",
                        flush=True,
                    )
                    if ok:
                        best, retried = clients, False
                        clients *= 2
                    elif retried:
                        break
                    else:
                        retried = True  # one hiccup of a busy machine: the same step again
            finally:
                pool.shutdown()
                process.terminate()
                await process.wait()
    report(
        "api" if args.symbols_per_client == len(SYMBOLS) else f"api-{args.symbols_per_client}sym",
        [
            "clients",
            "events/s each",
            "received/published",
            "p50 ms",
            "p99 ms",
            "dropped",
            "API CPU %",
        ],
        [
            [
                s["clients"],
                s["events_per_s_per_client"],
                s["received_of_published"],
                s["p50_ms"],
                s["p99_ms"],
                s["dropped"],
                s["api_cpu_percent"],
            ]
            for s in steps
        ],  # fmt: skip
        requests=requests,
        stream_clients_within_target=best,
        target_p99_ms=TARGET_P99_MS,
        symbols=len(SYMBOLS),
        prices_per_symbol_per_s=RATE_PER_SYMBOL,
        symbols_per_client=args.symbols_per_client,
        load_average_at_start=load,
        note="2-core machine shared with other work; the load generator runs on it too",
    )
    print(
        f"GET /v1/prices/{{ex}}/{{sym}}: {requests['requests_per_s']:,.0f} requests/s; "
        f"stream clients within p99 <= {TARGET_P99_MS:.0f} ms at {len(SYMBOLS)} symbols x "
        f"{RATE_PER_SYMBOL} prices/s ({args.symbols_per_client} symbols each): {best} "
        f"(load average at start {load[0]:.1f})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--symbols-per-client", type=int, default=100)
    parser.add_argument("--max-clients", type=int, default=1024)
    parser.add_argument("--client-procs", type=int, default=2, help="load processes")
    parser.add_argument("--workdir", default="/tmp/fairprice-bench-api")
    parsed = parser.parse_args()
    assert parsed.client_procs >= 1
    workdir = Path(parsed.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(parsed, workdir))
