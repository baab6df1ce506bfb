"""nats-server's CPU per message for a converter's live tail: one filter or one per partition.

    uv run python bench/filters.py [--messages 40000] [--symbols 500] [--rounds 2] [--replicas 3]

A fresh nats-server -js per run; our ``Publisher`` puts ``--messages`` top-20-sized books into
BOOKS (``--symbols`` subjects, spread over the 16 partitions by the stream's transform) while
``StreamTail``s read them, filtered four ways: the whole stream (``books.>``, what a lone
converter replica uses), one consumer with a filter per partition (16 filters), 16 tails
of one filter each, and ``--replicas`` tails of the partitions each of that many converter
replicas owns (what scaled-out replicas use). Two paces: flat out (the tail falls behind, as a
converter does under load or catching up) and paced (~5,000 a second, which the tail keeps up
with). Reported: the nats-server process's CPU microseconds per message, storing and
delivering. Prints a table and writes bench/results/filters.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import psutil
from _report import report

from fairprice.common.bus import connect_bus, ensure_streams
from fairprice.common.local_servers import run_nats
from fairprice.common.publisher import Publisher
from fairprice.common.settings import NatsSettings, StreamsSettings
from fairprice.common.subjects import Stream, books_partition_filter, books_subject
from fairprice.common.tail import StreamTail
from fairprice.converter.partitions import owned_partitions

PAYLOAD = b"x" * 1200
PACED_BURST = 50
"""Paced: this many messages, then 10 ms."""


async def server_us_per_msg(
    filters: list[list[str]], messages: int, symbols: int, paced: bool
) -> float:
    """nats-server CPU per message while ``messages`` go through BOOKS into one tail per entry
    of ``filters``."""
    async with run_nats() as server:
        assert server.process is not None
        proc = psutil.Process(server.process.pid)
        settings = NatsSettings(servers=[server.url])
        async with (
            connect_bus(settings, name="bench-publisher") as bus,
            connect_bus(settings, name="bench-tail") as reader,
            contextlib.AsyncExitStack() as stack,
        ):
            await ensure_streams(bus.jsm, StreamsSettings())
            tails = [
                await stack.enter_async_context(StreamTail(reader, Stream.BOOKS, f, start_seq=1))
                for f in filters
            ]

            async def consume() -> None:
                got = 0
                while got < messages:
                    for tail in tails:
                        got += len(await tail.next_batch(1000, 0.001))

            before = sum(proc.cpu_times()[:2])
            reading = asyncio.create_task(consume())
            async with Publisher(bus.nc) as publisher:
                for i in range(messages):
                    subject = books_subject("bench", f"S{i % symbols}USDT")
                    await publisher.publish(subject, PAYLOAD, f"bench:{i}")
                    if paced and i % PACED_BURST == 0:
                        await asyncio.sleep(0.01)
            await reading
            return (sum(proc.cpu_times()[:2]) - before) / messages * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--replicas", type=int, default=3)
    args = parser.parse_args()
    partitions = StreamsSettings().partitions
    members = tuple(f"converter-{n}" for n in range(args.replicas))
    shares = [sorted(owned_partitions(m, members, partitions)) for m in members]
    ways = {
        "one filter (books.>)": [[Stream.BOOKS.wildcard]],
        f"one tail, {partitions} filters": [[books_partition_filter(p) for p in range(partitions)]],
        f"{partitions} tails, one filter each": [
            [books_partition_filter(p)] for p in range(partitions)
        ],
        f"{args.replicas} tails, their partitions ({'/'.join(str(len(s)) for s in shares)})": [
            [books_partition_filter(p) for p in share] for share in shares
        ],
    }
    rows = []
    for paced in (False, True):
        for name, filters in ways.items():
            figures = [
                await server_us_per_msg(filters, args.messages, args.symbols, paced)
                for _ in range(args.rounds)
            ]
            rows.append(("paced" if paced else "flat out", name, *(round(f, 1) for f in figures)))
    rounds = [f"server_us_per_msg_round_{n + 1}" for n in range(args.rounds)]
    report("filters", ["pace", "tail", *rounds], rows, messages=args.messages, symbols=args.symbols)


if __name__ == "__main__":
    asyncio.run(main())
