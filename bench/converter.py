"""Converter throughput: books per second through consume -> compute -> publish, real NATS.

A real ``nats-server -js`` on a free port; top-20 books of ``--symbols`` symbols (BTC-like
prices, every level a decimal string) go into BOOKS; the converter runs in this process and
its output is counted in PRICES. Two paths:

- ``catch-up``: the books are in BOOKS before the converter starts, so every symbol is taken
  over and replayed (per-symbol tails), which is what a restarted or scaled replica does;
- ``live``: the converter is running and a separate process publishes the books as fast as it
  can; the converter reads them through its one tail of ``books.>``.

"books/s" is wall-clock; "books/cpu-s" divides by the CPU time this process (the converter,
nothing else: the publisher is another process) used, i.e. books per second per core.
Run: ``uv run python bench/converter.py [--books N] [--symbols S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import time

from _report import report
from prometheus_client import CollectorRegistry

from fairprice.common.bus import Bus, connect_bus, ensure_streams
from fairprice.common.messages import Book, decode, encode
from fairprice.common.publisher import Publisher
from fairprice.common.settings import HttpSettings, NatsSettings, StreamsSettings
from fairprice.common.subjects import Stream, book_msg_id, books_subject
from fairprice.common.testing import eventually, run_nats
from fairprice.converter.params import Params
from fairprice.converter.service import run
from fairprice.converter.settings import ConverterSection, ConverterSettings
from fairprice.converter.symbol_pipeline import SymbolPipeline


def _books(count: int, symbols: int, offset: int) -> list[Book]:
    rng = random.Random(offset)
    mids = [20_000.0 + 1000 * s for s in range(symbols)]
    books = []
    t = 1_700_000_000_000
    for i in range(count):
        s = i % symbols
        mids[s] += rng.gauss(0, 2.0)
        t += 1
        bid, ask = round(mids[s] - 0.01, 2), round(mids[s] + 0.01, 2)
        books.append(
            Book(
                exchange="bench",
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


async def _measure(
    name: str, bus: Bus, nats: NatsSettings, books: int, symbols: int, preload: bool, offset: int
) -> tuple[str, int, float, float, float]:
    base = await _prices(bus)
    if preload:
        await asyncio.to_thread(_publisher_process(nats.servers[0], books, symbols, offset).wait)
    settings = ConverterSettings(
        nats=nats,
        converter=ConverterSection(partitions=16, http=HttpSettings(host="127.0.0.1", port=0)),
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(settings, stop=stop, ready=ready, registry=CollectorRegistry()))
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        if preload:
            await _wait_prices(bus, base + books)
        else:
            started = asyncio.create_task(ready.wait())
            await asyncio.wait([started, task], return_when=asyncio.FIRST_COMPLETED)
            started.cancel()
            if task.done():
                task.result()  # it failed to start: say why
            wall, cpu = time.perf_counter(), time.process_time()
            publisher = _publisher_process(nats.servers[0], books, symbols, offset)
            await _wait_prices(bus, base + books)
            await asyncio.to_thread(publisher.wait)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        stop.set()
        await task
    return (name, books, wall, books / wall, books / cpu)


def _compute_only(books: int, symbols: int) -> tuple[str, int, float, float, float]:
    """Decode + pipeline + encode, no NATS: the converter's own share of a book's cost."""
    payloads = [encode(book) for book in _books(books, symbols, 1)]
    pipelines: dict[str, SymbolPipeline] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    for data in payloads:
        book = decode(data, Book)
        pipeline = pipelines.get(book.symbol)
        if pipeline is None:
            pipeline = pipelines[book.symbol] = SymbolPipeline("bench", book.symbol, Params())
        pipeline.process(book)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return ("compute only (no NATS)", books, wall, books / wall, books / cpu)


async def _main(books: int, symbols: int) -> None:
    async with run_nats() as server:
        nats = NatsSettings(servers=[server.url])
        async with connect_bus(nats, name="bench") as bus:
            await ensure_streams(bus.jsm, StreamsSettings())
            rows = [
                _compute_only(books, symbols),
                await _measure("catch-up (replay)", bus, nats, books, symbols, True, 1),
                await _measure("live (tail of books.>)", bus, nats, books, symbols, False, 10**9),
            ]
    report(
        "converter",
        ["path", "books", "seconds", "books/s", "books/cpu-s"],
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
    args = parser.parse_args()
    asyncio.run(_main(args.books, args.symbols))


if __name__ == "__main__":
    main()
