"""Converter throughput: books per second through consume -> compute -> publish, real NATS.

A real ``nats-server -js`` on a free port; top-20 books of ``--symbols`` symbols (BTC-like
prices, every level a decimal string) go into BOOKS; the converter runs in this process and
its output is counted in PRICES. Two paths:

- ``catch-up``: the books are in BOOKS before the converter starts, so every symbol is taken
  over and replayed (per-symbol tails), which is what a restarted or scaled replica does;
- ``live``: the converter is running and a separate process publishes the books as fast as it
  can; the converter reads them through its one tail of ``books.>``;
- ``live, N replicas`` (``--replicas``, 3): the same with N converter replicas in this process
  sharing the partitions, each reading its own through a tail per partition: what a scaled-out
  converter costs nats-server while it is behind.

"books/s" is wall-clock; "books/cpu-s" divides by the CPU time this process (the converter,
nothing else: the publisher is another process) used, i.e. books per second per core;
"us/book" is CPU microseconds per book; "nats us/book" is nats-server's, storing and
delivering (and the replicas' prices stored).

Each path runs twice on the same books: ``1m`` (1-minute candles only and the SMA crossover:
today's outputs, with the indicators on the 1-minute candles) and ``all`` (candles of all seven
intervals, every indicator, every strategy). The books of a symbol are a second apart in event
time, so candles close every minute and the indicators warm up within the run: the candle
work is a larger share here than at Binance's pace.
Run: ``uv run python bench/converter.py [--books N] [--symbols S] [--replicas R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import time
from typing import Any

import psutil
from _report import report
from prometheus_client import CollectorRegistry

from fairprice.common.bus import Bus, connect_bus, ensure_streams
from fairprice.common.feeds import STRATEGIES
from fairprice.common.intervals import INTERVALS
from fairprice.common.local_servers import run_nats
from fairprice.common.messages import Book, decode, encode
from fairprice.common.publisher import Publisher
from fairprice.common.settings import HttpSettings, NatsSettings, StreamsSettings
from fairprice.common.subjects import Stream, book_msg_id, books_subject
from fairprice.common.testing import eventually
from fairprice.converter.params import params_for
from fairprice.converter.service import run
from fairprice.converter.settings import ConverterSection, ConverterSettings
from fairprice.converter.symbol_pipeline import SymbolPipeline


def _books(count: int, symbols: int, offset: int) -> list[Book]:
    rng = random.Random(offset)
    mids = [20_000.0 + 1000 * s for s in range(symbols)]
    books = []
    t = 1_700_000_000_000
    step = max(1000 // symbols, 1)  # a book of each symbol per second of event time
    for i in range(count):
        s = i % symbols
        mids[s] += rng.gauss(0, 2.0)
        t += step
        bid, ask = round(mids[s] - 0.01, 2), round(mids[s] + 0.01, 2)
        books.append(
            Book(
                exchange=f"bench{offset // 10**9}",  # each run its own symbols
                symbol=f"SYM{s:03d}USDT",
                update_id=offset + i,
                first_update_id=offset + i,
                event_time_ms=t,
                receive_time_ms=t,
                bids=[(f"{bid - k * 0.01:.2f}", f"{rng.uniform(0.001, 2):.5f}") for k in range(20)],
                asks=[(f"{ask + k * 0.01:.2f}", f"{rng.uniform(0.001, 2):.5f}") for k in range(20)],
            )
        )
    return books


async def _publish(url: str, count: int, symbols: int, offset: int) -> None:
    async with (
        connect_bus(NatsSettings(servers=[url]), name="bench-publisher") as bus,
        Publisher(bus.nc, max_in_flight=20_000) as publisher,
    ):
        for book in _books(count, symbols, offset):
            await publisher.publish(
                books_subject(book.exchange, book.symbol),
                encode(book),
                book_msg_id(book.exchange, book.symbol, book.update_id),
            )


def _publisher_process(url: str, count: int, symbols: int, offset: int) -> subprocess.Popen[bytes]:
    args = [sys.executable, __file__, "--publish", url, str(count), str(symbols), str(offset)]
    return subprocess.Popen(args)


async def _prices(bus: Bus) -> int:
    return (await bus.jsm.stream_info(Stream.PRICES.value)).state.messages


async def _wait_prices(bus: Bus, count: int) -> None:
    await eventually(lambda: _at_least(bus, count), within=600, interval=0.02, what="prices")


async def _at_least(bus: Bus, count: int) -> bool:
    return await _prices(bus) >= count


CONFIGS: dict[str, dict[str, Any]] = {  # measured in this order
    "1m": {"candle_intervals": ["1m"], "strategies": ["sma_cross"]},
    "all": {"candle_intervals": list(INTERVALS), "strategies": list(STRATEGIES)},
}
Row = tuple[str, str, int, float, float, float, float, float | None]


def _row(
    name: str, config: str, books: int, wall: float, cpu: float, server_cpu: float | None = None
) -> Row:
    server = None if server_cpu is None else server_cpu / books * 1e6
    return (name, config, books, wall, books / wall, books / cpu, cpu / books * 1e6, server)


async def _measure(
    name: str,
    config: str,
    bus: Bus,
    nats: NatsSettings,
    books: int,
    symbols: int,
    preload: bool,
    offset: int,
    server: psutil.Process,
    replicas: int = 1,
) -> Row:
    for stream in Stream:  # a clean slate: a converter takes over every symbol BOOKS holds
        await bus.jsm.purge_stream(stream.value)
    base = await _prices(bus)
    if preload:
        await asyncio.to_thread(_publisher_process(nats.servers[0], books, symbols, offset).wait)
    settings = ConverterSettings(
        nats=nats,
        converter=ConverterSection(http=HttpSettings(host="127.0.0.1", port=0), **CONFIGS[config]),
    )
    stop = asyncio.Event()
    registries = [CollectorRegistry() for _ in range(replicas)]
    readies = [asyncio.Event() for _ in range(replicas)]
    tasks = [
        asyncio.create_task(run(settings, stop=stop, ready=ready, registry=registry))
        for ready, registry in zip(readies, registries, strict=True)
    ]
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        server_cpu = sum(server.cpu_times()[:2])
        if preload:
            await _wait_prices(bus, base + books)
        else:
            await _started(tasks, readies, registries)
            wall, cpu = time.perf_counter(), time.process_time()
            server_cpu = sum(server.cpu_times()[:2])
            publisher = _publisher_process(nats.servers[0], books, symbols, offset)
            await _wait_prices(bus, base + books)
            await asyncio.to_thread(publisher.wait)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        server_cpu = sum(server.cpu_times()[:2]) - server_cpu
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return _row(name, config, books, wall, cpu, server_cpu)


async def _started(
    tasks: list[asyncio.Task[None]],
    readies: list[asyncio.Event],
    registries: list[CollectorRegistry],
) -> None:
    """Every replica ready, and the partitions shared out between them (each owns some)."""
    partitions = StreamsSettings().partitions

    def placed() -> bool:
        for task in tasks:
            if task.done():
                task.result()  # it failed to start: say why
        owned = [
            r.get_sample_value("fairprice_converter_owned_partitions") or 0 for r in registries
        ]
        return all(r.is_set() for r in readies) and sum(owned) == partitions and all(owned)

    await eventually(placed, within=60, what="replicas ready and sharing the partitions")


def _compute_only(books: int, symbols: int, config: str) -> Row:
    """Decode + pipeline + encode, no NATS: the converter's own share of a book's cost."""
    payloads = [encode(book) for book in _books(books, symbols, 1)]
    params = params_for(ConverterSection(**CONFIGS[config]))
    pipelines: dict[str, SymbolPipeline] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    for data in payloads:
        book = decode(data, Book)
        pipeline = pipelines.get(book.symbol)
        if pipeline is None:
            pipeline = pipelines[book.symbol] = SymbolPipeline("bench", book.symbol, params)
        pipeline.process(book)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return _row("compute only (no NATS)", config, books, wall, cpu)


async def _main(books: int, symbols: int, replicas: int) -> None:
    async with run_nats() as server:
        assert server.process is not None
        process = psutil.Process(server.process.pid)
        nats = NatsSettings(servers=[server.url])
        async with connect_bus(nats, name="bench") as bus:
            await ensure_streams(bus.jsm, StreamsSettings())
            rows = [_compute_only(books, symbols, config) for config in CONFIGS]
            offset = 1
            paths = [
                ("catch-up (replay)", True, 1),
                ("live (tail of books.>)", False, 1),
                (f"live, {replicas} replicas (a tail per partition)", False, replicas),
            ]
            for name, preload, count in paths:
                for config in (*CONFIGS, *reversed(CONFIGS)):  # ABBA: order effects cancel
                    # Each run its own exchange name (so symbols) and update ids too.
                    rows.append(
                        await _measure(
                            name, config, bus, nats, books, symbols, preload, offset, process, count
                        )
                    )
                    offset += 10**9
    report(
        "converter",
        ["path", "config", "books", "seconds", "books/s", "books/cpu-s", "us/book", "nats us/book"],
        rows,
        symbols=symbols,
        levels_per_side=20,
        target_books_per_core_s=20_000,
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--publish":
        url, count, symbols, offset = sys.argv[2], *map(int, sys.argv[3:6])
        asyncio.run(_publish(url, count, symbols, offset))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=60_000)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--replicas", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(_main(args.books, args.symbols, args.replicas))


if __name__ == "__main__":
    main()
