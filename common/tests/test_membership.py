"""Membership and rendezvous ownership against the real nats-server."""

from __future__ import annotations

import collections

from fairprice.common.bus import Bus
from fairprice.common.feeds import Feed, encode_feed, read_feeds
from fairprice.common.kv import Bucket, open_bucket, snapshot
from fairprice.common.membership import Membership, rendezvous_owners
from fairprice.common.testing import eventually

SYMBOLS = [f"SYM{i}USDT" for i in range(300)]


def test_rendezvous_spreads_keys_and_moves_only_the_leavers() -> None:
    members = ("a", "b", "c")
    owners = {s: rendezvous_owners(s, members)[0] for s in SYMBOLS}
    counts = collections.Counter(owners.values())
    assert set(counts) == {"a", "b", "c"}
    assert min(counts.values()) > len(SYMBOLS) / 6  # roughly even
    after = {s: rendezvous_owners(s, ("a", "c"))[0] for s in SYMBOLS}
    moved = {s for s in SYMBOLS if owners[s] != after[s]}
    assert moved == {s for s in SYMBOLS if owners[s] == "b"}


def test_rendezvous_redundancy_gives_distinct_owners() -> None:
    for symbol in SYMBOLS[:50]:
        owners = rendezvous_owners(symbol, ("a", "b", "c"), redundancy=2)
        assert len(set(owners)) == 2
        assert owners[0] == rendezvous_owners(symbol, ("a", "b", "c"))[0]


async def test_membership_sees_joins_clean_leaves_and_dead_members(bus: Bus) -> None:
    kwargs = {"heartbeat_s": 0.1, "ttl_s": 1.0}
    async with Membership(bus, "crawler", member_id="a", **kwargs) as a:
        async with Membership(bus, "crawler", member_id="b", **kwargs) as b:
            await eventually(lambda: a.members == ("a", "b") and b.members == ("a", "b"))
            assert sum(a.owns(s) for s in SYMBOLS) + sum(b.owns(s) for s in SYMBOLS) == 300
            assert not any(a.owns(s) and b.owns(s) for s in SYMBOLS)
        await eventually(lambda: a.members == ("a",))  # b left cleanly: its key is deleted

        # A member that dies without leaving: its heartbeat key expires with the TTL.
        kv = await open_bucket(bus.js, Bucket.MEMBERS)
        await kv.put("crawler.ghost", b"1")
        await eventually(lambda: "ghost" in a.members)
        await eventually(lambda: a.members == ("a",), within=5)
        # Another group is not mixed in.
        async with Membership(bus, "converter", member_id="x", **kwargs) as x:
            assert x.members == ("x",)
            assert set(await snapshot(bus, Bucket.MEMBERS, "crawler.*")) == {"crawler.a"}


async def test_feeds_round_trip_through_the_bucket(bus: Bus) -> None:
    kv = await open_bucket(bus.js, Bucket.FEEDS)
    await kv.put("default.btc", encode_feed(Feed(symbols=["BTCUSDT"], depth=10)))
    await kv.put("default.bad", b'{"symbols": "not a list"}')
    await kv.put("default.gone", encode_feed(Feed(symbols=["ETHUSDT"])))
    await kv.delete("default.gone")
    assert set(await snapshot(bus, Bucket.FEEDS)) == {"default.btc", "default.bad"}
    feeds = await read_feeds(bus)
    assert feeds == {"default.btc": Feed(symbols=["BTCUSDT"], depth=10)}
