"""Storer throughput: order books from JetStream into the real influxd, against influxd's own
ceiling measured in the same run.

    uv run python bench/storer.py [--books 60000] [--batch-size 5000] [--levels 20] [--rounds 2]

Alternating runs, each against a fresh influxd (an influxd that already holds data compacts it
in the background and ingests at half speed, which would bias whichever run comes second):

- ceiling: the same books as pre-built line protocol, posted straight to ``/write`` in bodies
  of ``--batch-size`` lines, one request at a time;
- storer: the books published into BOOKS first (not timed), then the storer started
  in-process and timed from ready until InfluxDB acknowledged every point (its own counter).

Rounds go ceiling, storer, ceiling, storer, ..., ceiling; the medians are compared. Prints a
table and writes bench/results/storer.json. Target: storer >= 80% of the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass

import httpx
import psutil
from _report import report
from prometheus_client import CollectorRegistry

from fairprice.common.bus import connect_bus, ensure_streams
from fairprice.common.local_servers import InfluxServer, NatsServer, run_influxd, run_nats
from fairprice.common.logs import configure_logging
from fairprice.common.messages import Book, encode
from fairprice.common.publisher import Publisher
from fairprice.common.settings import HttpSettings, InfluxSettings, LogSettings, NatsSettings
from fairprice.common.subjects import book_msg_id, books_subject
from fairprice.storer import StorerSettings, run
from fairprice.storer.line_protocol import LineEncoder
from fairprice.storer.settings import StorerSection

SYMBOLS = 10
_PROCS = ("influxd", "nats_server", "storer")


def make_books(count: int, levels: int) -> list[Book]:
    start = (int(time.time() * 1000) - 3_600_000) // 1000 * 1000
    books = []
    for i in range(count):
        symbol = f"SYM{i % SYMBOLS}"
        base = 100 + (i % SYMBOLS) * 10 + (i % 97) * 0.01
        books.append(
            Book(
                exchange="bench",
                symbol=symbol,
                update_id=i,
                first_update_id=i,
                event_time_ms=start + (i // SYMBOLS) * 10,
                receive_time_ms=start + (i // SYMBOLS) * 10 + 2,
                bids=[(f"{base - j * 0.01:.2f}", f"{0.5 + j * 0.125:.8f}") for j in range(levels)],
                asks=[
                    (f"{base + 0.01 + j * 0.01:.2f}", f"{0.75 + j * 0.125:.8f}")
                    for j in range(levels)
                ],
            )
        )
    return books


def book_bodies(books: list[Book], batch_size: int) -> list[bytes]:
    """``books`` as line protocol, the storer's own encoding, in bodies of ``batch_size``."""
    encoder = LineEncoder()
    lines = [encoder.book(book) or "" for book in books]
    return ["\n".join(lines[i : i + batch_size]).encode() for i in range(0, len(lines), batch_size)]


@dataclass
class Run:
    points_per_s: float
    cpu_us_per_point: dict[str, float]
    """CPU microseconds per point by process: influxd, nats-server, storer (this process)."""


class _Cpu:
    """CPU seconds used by some processes between ``start`` and ``stop``."""

    def __init__(self, **pids: int | None) -> None:
        self._processes = {name: psutil.Process(pid) for name, pid in pids.items()}

    def _now(self) -> dict[str, float]:
        return {name: sum(p.cpu_times()[:2]) for name, p in self._processes.items()}

    def start(self) -> None:
        self._start = self._now()

    def per_point(self, points: int) -> dict[str, float]:
        end = self._now()
        return {name: (end[name] - self._start[name]) / points * 1e6 for name in end}


async def ceiling(bodies: list[bytes], points: int) -> Run:
    """Pre-built bodies posted one after another to a fresh influxd."""
    database = "ceiling"
    async with (
        run_influxd() as influxd,
        httpx.AsyncClient(base_url=influxd.url, timeout=60) as client,
    ):
        await client.post("/query", data={"q": f'CREATE DATABASE "{database}"'})
        cpu = _Cpu(influxd=_pid(influxd))
        cpu.start()
        started = time.perf_counter()
        for body in bodies:
            response = await client.post(
                "/write", params={"db": database, "precision": "ms"}, content=body
            )
            response.raise_for_status()
        return Run(points / (time.perf_counter() - started), cpu.per_point(points))


async def through_storer(books: list[Book], batch_size: int) -> Run:
    """A filled BOOKS stream drained by the storer into a fresh influxd."""
    async with run_nats() as nats_server, run_influxd() as influxd:
        nats = NatsSettings(servers=[nats_server.url])
        await _publish(nats, books)
        cpu = _Cpu(influxd=_pid(influxd), nats_server=_pid(nats_server), storer=None)
        return await _store(nats, influxd.url, len(books), batch_size, cpu)


def _us(value: float | None) -> int | str:
    return "" if value is None else round(value)


def _pid(server: InfluxServer | NatsServer) -> int:
    assert server.process is not None
    return server.process.pid


async def _publish(nats: NatsSettings, books: list[Book]) -> None:
    async with connect_bus(nats, name="bench") as bus:
        await ensure_streams(bus.jsm, nats.streams)
        async with Publisher(bus.nc) as publisher:
            for book in books:
                await publisher.publish(
                    books_subject(book.exchange, book.symbol),
                    encode(book),
                    book_msg_id(book.exchange, book.symbol, book.update_id),
                )


async def _store(
    nats: NatsSettings, influx_url: str, points: int, batch_size: int, cpu: _Cpu
) -> Run:
    settings = StorerSettings(
        nats=nats,
        influx=InfluxSettings(url=influx_url, timeout_s=60),
        storer=StorerSection(
            batch_size=batch_size,
            max_ack_pending=max(20_000, 4 * batch_size),
            http=HttpSettings(host="127.0.0.1", port=0),
        ),
    )
    registry = CollectorRegistry()
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(settings, stop=stop, ready=ready, registry=registry))
    await ready.wait()
    cpu.start()
    started = time.perf_counter()
    while (
        registry.get_sample_value(
            "fairprice_storer_points_written_total", {"measurement": "orderbook"}
        )
        or 0
    ) < points:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    used = cpu.per_point(points)
    stop.set()
    await task
    return Run(points / elapsed, used)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--books", type=int, default=60_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--levels", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    configure_logging(LogSettings(level="ERROR"), service="bench")

    books = make_books(args.books, args.levels)
    bodies = book_bodies(books, args.batch_size)
    ceilings, storers = [await ceiling(bodies, len(books))], []
    for _ in range(args.rounds):
        storers.append(await through_storer(books, args.batch_size))
        ceilings.append(await ceiling(bodies, len(books)))
    reference = statistics.median(c.points_per_s for c in ceilings)
    storer = statistics.median(s.points_per_s for s in storers)
    ratio = storer / reference
    print(
        f"storer benchmark: {args.books:,} books of {args.levels} levels a side "
        f"({4 * args.levels + 3} fields), batch {args.batch_size:,}, {SYMBOLS} symbols"
    )
    rows = [
        [name, round(r.points_per_s), *(_us(r.cpu_us_per_point.get(p)) for p in _PROCS)]
        for name, r in [
            *((f"ceiling {n + 1}", c) for n, c in enumerate(ceilings)),
            *((f"storer {n + 1}", s) for n, s in enumerate(storers)),
        ]
    ]
    rows += [
        ["ceiling median", round(reference), "", "", ""],
        ["storer median", round(storer), "", "", ""],
    ]
    columns = ["run", "points_per_s", *(f"{p}_cpu_us_per_point" for p in _PROCS)]
    report(
        "storer",
        columns,
        rows,
        books=args.books,
        levels=args.levels,
        batch_size=args.batch_size,
        ratio=round(ratio, 3),
        target=0.8,
    )
    print(f"storer / ceiling: {ratio:.0%} (target >= 80%)")


if __name__ == "__main__":
    asyncio.run(main())
