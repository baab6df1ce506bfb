"""JetStream throughput of the common publisher and pull consumer against a real nats-server.

Measures, for 1 KiB messages with a Nats-Msg-Id each: ``js.publish`` one at a time (the
baseline), nats-py's ``publish_async``, our pipelined ``Publisher``; then consuming with acks
via nats-py's ``fetch`` and via our ``PullConsumer``. Run: ``uv run python bench/bus.py``.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Awaitable, Callable

from _report import report

from fairprice.common.bus import Bus, connect_bus, ensure_streams
from fairprice.common.consumer import PullConsumer
from fairprice.common.local_servers import run_nats
from fairprice.common.publisher import Publisher
from fairprice.common.settings import NatsSettings, StreamsSettings
from fairprice.common.subjects import Stream, books_subject

N = 50_000
PAYLOAD = b"x" * 1024


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _timed(n: int, work: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), _cpu()
    await work()
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    return n / wall, cpu / n * 1e6


async def publish_rate(bus: Bus, n: int, payload: bytes) -> tuple[float, float]:
    """Our pipelined ``Publisher`` putting ``n`` messages into BOOKS: (msg/s, client CPU us/msg)."""
    subject = books_subject("bench", "A")

    async def ours() -> None:
        async with Publisher(bus.nc) as publisher:
            for i in range(n):
                await publisher.publish(subject, payload, f"p{i}")

    return await _timed(n, ours)


async def consume_rate(bus: Bus, n: int) -> tuple[float, float]:
    """Our ``PullConsumer`` taking and acking ``n`` messages from BOOKS: (msg/s, CPU us/msg)."""

    async def pull() -> None:
        async with PullConsumer(bus, Stream.BOOKS, "pull", batch=1000) as consumer:
            got = 0
            while got < n:
                for msg in await consumer.next_batch(1000, max_wait=1):
                    await msg.ack()
                    got += 1

    return await _timed(n, pull)


async def jetstream_ceilings(n: int, payload: bytes) -> dict[str, tuple[float, float]]:
    """Publish then consume ``n`` messages of ``payload`` on a fresh nats-server, one client."""
    async with (
        run_nats() as server,
        connect_bus(NatsSettings(servers=[server.url]), name="bench") as bus,
    ):
        await _fresh(bus)
        publish = await publish_rate(bus, n, payload)
        return {"publish": publish, "consume": await consume_rate(bus, n)}


async def _fresh(bus: Bus) -> None:
    for info in await bus.jsm.streams_info():
        await bus.jsm.delete_stream(info.config.name or "")
    await ensure_streams(bus.jsm, StreamsSettings())


async def main() -> None:
    rows = []
    subject = books_subject("bench", "A")
    async with (
        run_nats() as server,
        connect_bus(NatsSettings(servers=[server.url]), name="bench") as bus,
    ):
        await _fresh(bus)
        n_sync = N // 10

        async def js_publish() -> None:
            for i in range(n_sync):
                await bus.js.publish(subject, PAYLOAD, headers={"Nats-Msg-Id": f"s{i}"})

        rows.append(("js.publish (await each)", n_sync, *await _timed(n_sync, js_publish)))

        await _fresh(bus)

        async def js_publish_async() -> None:
            for i in range(N):
                await bus.js.publish_async(subject, PAYLOAD, headers={"Nats-Msg-Id": f"a{i}"})
            await bus.js.publish_async_completed()

        rows.append(("js.publish_async", N, *await _timed(N, js_publish_async)))

        await _fresh(bus)

        rows.append(("Publisher (fairprice)", N, *await publish_rate(bus, N, PAYLOAD)))

        async def fetch() -> None:
            sub = await bus.js.pull_subscribe(subject, durable="fetch", stream="BOOKS")
            got = 0
            while got < N:
                for msg in await sub.fetch(1000, timeout=5):
                    await msg.ack()
                    got += 1

        rows.append(("js fetch(1000) + ack", N, *await _timed(N, fetch)))

        rows.append(("PullConsumer (fairprice) + ack", N, *await consume_rate(bus, N)))
    print(f"{N:,} messages of {len(PAYLOAD)} bytes, real nats-server, one Python client")
    report("bus", ["path", "messages", "msg_per_s", "client_cpu_us_per_msg"], rows)


if __name__ == "__main__":
    asyncio.run(main())
