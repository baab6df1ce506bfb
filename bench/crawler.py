"""Crawler hot path: diff events per second and CPU per event, sync + publish, on one core.

For 1, 100 and 1,000 symbols, each with a 1,000-level-a-side snapshot, synthetic Binance
``@depth@100ms`` frames (5-35 levels each, most near the top of the book, as real ones) go
through exactly what the live crawler does per frame: ``Binance.parse_frame`` (msgspec),
``SyncEngine.on_event`` (sequence checks, book upkeep, top-20 when it changed), and for the
"+ publish" column ``encode`` + ``Publisher.publish`` to a real nats-server with JetStream
(BOOKS stream, ``Nats-Msg-Id``), waiting for every PubAck at the end. The process is pinned
to one core (nats-server runs on the other); CPU is this process's CPU time. Frames are fed as
fast as the loop takes them; events/CPU-s is the rate one fully free core would sustain (the
wall-clock rate also counts other processes sharing the machine). 1,000 symbols at 100 ms is
10,000 events a second: the target.
Memory per symbol: tracemalloc's count for 200 books loaded from 1,000-level snapshots
(both sides), parsed from JSON as live.

Run: ``uv run python bench/crawler.py`` (``--events N`` per scenario, default 60,000).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import tempfile
import time
import tracemalloc
from pathlib import Path

import msgspec
from _report import report

from fairprice.common.bus import connect_bus, ensure_streams
from fairprice.common.local_servers import run_nats
from fairprice.common.messages import encode
from fairprice.common.publisher import Publisher
from fairprice.common.settings import NatsSettings, StreamsSettings
from fairprice.common.subjects import Stream, book_msg_id, books_subject
from fairprice.crawler.binance import Binance
from fairprice.crawler.exchange import DepthEvent, Snapshot
from fairprice.crawler.sync import SyncEngine

SNAPSHOT_LEVELS = 1000
TICK = 0.01


class _Market:
    """Random-walk books of ``n`` symbols producing Binance frames."""

    def __init__(self, n: int, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.symbols = [f"SYM{i:04d}USDT" for i in range(n)]
        self.mid = dict.fromkeys(self.symbols, 20_000)  # in ticks
        self.update_id = {s: 1_000_000 + i * 7 for i, s in enumerate(self.symbols)}

    def snapshot(self, symbol: str) -> Snapshot:
        """Parsed from the JSON body Binance would send, as the crawler does (every string a
        separate object, as in a live book)."""
        mid, rng = self.mid[symbol], self.rng
        bids = [
            (_price(mid - 1 - i), f"{rng.uniform(0.001, 50):.8f}") for i in range(SNAPSHOT_LEVELS)
        ]
        asks = [
            (_price(mid + 1 + i), f"{rng.uniform(0.001, 50):.8f}") for i in range(SNAPSHOT_LEVELS)
        ]
        body = {"lastUpdateId": self.update_id[symbol], "bids": bids, "asks": asks}
        return Binance().parse_snapshot(msgspec.json.encode(body))

    def frame(self, symbol: str, event_ms: int) -> bytes:
        rng = self.rng
        mid = self.mid[symbol] = self.mid[symbol] + rng.choice((-1, 0, 0, 1))
        first = self.update_id[symbol] + 1
        last = self.update_id[symbol] = first + rng.randint(0, 5)
        bids, asks = [], []
        for _ in range(rng.randint(5, 35)):
            distance = int(rng.expovariate(1 / 40)) + 1  # most changes near the top
            qty = "0.00000000" if rng.random() < 0.3 else f"{rng.uniform(0.001, 50):.8f}"
            if rng.random() < 0.5:
                bids.append((_price(mid - distance), qty))
            else:
                asks.append((_price(mid + distance), qty))
        data = {"e": "depthUpdate", "E": event_ms, "s": symbol, "U": first, "u": last}
        data |= {"b": bids, "a": asks}
        stream = symbol.lower() + "@depth@100ms"
        return msgspec.json.encode({"stream": stream, "data": data})


def _price(ticks: int) -> str:
    return f"{ticks * TICK:.8f}"


def _prepare(n: int, events: int) -> tuple[SyncEngine, list[bytes]]:
    market = _Market(n)
    engine = SyncEngine(Binance(), depth=20)
    for symbol in market.symbols:
        engine.add(symbol)
        snapshot = market.snapshot(symbol)
        # The first event opens the symbol's buffer; the snapshot then syncs it.
        engine.on_event(DepthEvent(symbol, snapshot.last_id, snapshot.last_id, 0, [], []), 0)
        engine.on_snapshot(symbol, snapshot)
    assert engine.synced_count == n
    frames = [market.frame(market.symbols[i % n], 1_700_000_000_000 + i) for i in range(events)]
    return engine, frames


def _sync_only(engine: SyncEngine, frames: list[bytes]) -> tuple[float, float, int]:
    parse = engine.exchange.parse_frame
    on_event = engine.on_event
    built = 0
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    for data in frames:
        event = parse(data)
        assert isinstance(event, DepthEvent)
        book = on_event(event, 0)
        if book is not None:
            encode(book)
            built += 1
    return time.perf_counter() - wall, time.process_time() - cpu, built


async def _with_publish(
    engine: SyncEngine, frames: list[bytes], nats: NatsSettings
) -> tuple[float, float, int]:
    parse = engine.exchange.parse_frame
    on_event = engine.on_event
    subjects: dict[str, str] = {}
    built = 0
    async with connect_bus(nats, name="bench-crawler") as bus:
        await ensure_streams(bus.jsm, StreamsSettings(storage="memory"), (Stream.BOOKS,))
        async with Publisher(bus.nc) as publisher:
            gc.collect()
            wall, cpu = time.perf_counter(), time.process_time()
            for data in frames:
                event = parse(data)
                assert isinstance(event, DepthEvent)
                book = on_event(event, time.time_ns() // 1_000_000)
                if book is not None:
                    subject = subjects.get(book.symbol)
                    if subject is None:
                        subject = subjects[book.symbol] = books_subject("binance", book.symbol)
                    await publisher.publish(
                        subject, encode(book), book_msg_id("binance", book.symbol, book.update_id)
                    )
                    built += 1
            await publisher.flush()
            elapsed, used = time.perf_counter() - wall, time.process_time() - cpu
        await bus.jsm.delete_stream(Stream.BOOKS.value)
    return elapsed, used, built


def memory_per_symbol(n: int = 200) -> float:
    """Bytes held per synced symbol: the snapshots are parsed while tracing (the book keeps
    their strings) and dropped once loaded."""
    market = _Market(n)
    gc.collect()
    tracemalloc.start()
    engine = SyncEngine(Binance())
    for symbol in market.symbols:
        snapshot = market.snapshot(symbol)
        engine.add(symbol)
        engine.on_event(DepthEvent(symbol, snapshot.last_id, snapshot.last_id, 0, [], []), 0)
        engine.on_snapshot(symbol, snapshot)
        del snapshot
    gc.collect()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return current / n


async def _main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=60_000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        async with run_nats(Path(tmp)) as server:
            if hasattr(os, "sched_setaffinity") and server.process is not None:
                os.sched_setaffinity(server.process.pid, {1 % (os.cpu_count() or 1)})
            nats = NatsSettings(servers=[server.url])
            for n in (1, 100, 1000):
                engine, frames = _prepare(n, args.events)
                wall, cpu, built = _sync_only(engine, frames)
                engine2, frames2 = _prepare(n, args.events)
                pwall, pcpu, pbuilt = await _with_publish(engine2, frames2, nats)
                rows.append(
                    [
                        n,
                        args.events,
                        round(args.events / wall),
                        round(cpu / args.events * 1e6, 1),
                        round(args.events / pwall),
                        round(pcpu / args.events * 1e6, 1),
                        round(args.events / pcpu),
                        round(pbuilt / args.events * 100, 1),
                    ]
                )
    per_symbol = memory_per_symbol()
    report(
        "crawler",
        [
            "symbols",
            "events",
            "sync events/s",
            "sync CPU us/event",
            "sync+publish events/s",
            "sync+publish CPU us/event",
            "sync+publish events/CPU-s",
            "% events published",
        ],
        rows,
        memory_per_symbol_bytes_depth_1000=round(per_symbol),
        target_events_per_s=10_000,
    )
    print(f"memory per symbol at snapshot depth {SNAPSHOT_LEVELS}: {per_symbol / 1024:,.0f} KiB")


if __name__ == "__main__":
    asyncio.run(_main())
