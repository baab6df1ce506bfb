"""KV snapshots against the real nats-server: every live key, and no consumer left behind."""

from __future__ import annotations

import asyncio

from fairprice.common.bus import Bus
from fairprice.common.kv import Bucket, kv_stream, open_bucket, snapshot
from fairprice.common.membership import Membership
from fairprice.common.testing import eventually


async def _consumers(bus: Bus, bucket: Bucket) -> int:
    return (await bus.jsm.stream_info(kv_stream(bucket))).state.consumer_count


async def test_a_snapshot_is_every_live_key_and_leaves_no_consumer(bus: Bus) -> None:
    """nats-server 2.15 takes 1,000 consumers a stream by default: a read that left its
    consumer for the server to expire (nats-py's ``kv.watch``: five minutes) made the
    1,001st read within minutes fail."""
    kv = await open_bucket(bus.js, Bucket.FEEDS)
    await kv.put("default.a", b"1")
    await kv.put("default.b", b"2")
    await kv.put("default.b", b"3")
    await kv.put("default.c", b"4")
    await kv.delete("default.c")
    for _ in range(5):
        assert await snapshot(bus, Bucket.FEEDS) == {"default.a": b"1", "default.b": b"3"}
    assert await snapshot(bus, Bucket.FEEDS, "default.a") == {"default.a": b"1"}
    assert await snapshot(bus, Bucket.FEEDS, "other.*") == {}
    assert await _consumers(bus, Bucket.FEEDS) == 0


async def test_concurrent_snapshots_each_see_the_key(bus: Bus) -> None:
    """nats-py's watcher could put its end-of-keys marker before the first key: 2-34 of
    5,400 such reads came back empty; this test has 1,800."""
    kv = await open_bucket(bus.js, Bucket.FEEDS)
    await kv.put("default.only", b"x")
    for _ in range(60):
        reads = await asyncio.gather(*(snapshot(bus, Bucket.FEEDS) for _ in range(30)))
        assert all(read == {"default.only": b"x"} for read in reads)
    assert await _consumers(bus, Bucket.FEEDS) == 0


async def test_membership_heartbeats_leave_no_consumers_behind(bus: Bus) -> None:
    """Every heartbeat reads the members: 25 of them leave at most the read under way."""
    kv = await open_bucket(bus.js, Bucket.MEMBERS)
    async with Membership(bus, "crawler", member_id="a", heartbeat_s=0.02, ttl_s=1.0):
        first = (await kv.get("crawler.a")).revision or 0

        async def beaten() -> bool:
            return ((await kv.get("crawler.a")).revision or 0) >= first + 25

        await eventually(beaten, what="25 heartbeats")
        assert await _consumers(bus, Bucket.MEMBERS) <= 1
