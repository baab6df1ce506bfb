"""The JetStream metadata of a delivered message, from either reply layout."""

from __future__ import annotations

import pytest

from fairprice.common.bus import Bus
from fairprice.common.delivery import Delivery, delivery, parse_reply
from fairprice.common.errors import InvalidMessageError

EXPECTED = Delivery("BOOKS", "c1", 2, 1234, 17, 1700000000000000000, 5)


def test_delivery_short_layout() -> None:
    assert parse_reply("$JS.ACK.BOOKS.c1.2.1234.17.1700000000000000000.5") == EXPECTED


@pytest.mark.parametrize(
    "reply",
    [
        "$JS.ACK._.ACCHASH.BOOKS.c1.2.1234.17.1700000000000000000.5",
        "$JS.ACK.hub.ACCHASH.BOOKS.c1.2.1234.17.1700000000000000000.5.r4nd0m",
    ],
)
def test_delivery_long_layout(reply: str) -> None:
    assert parse_reply(reply) == EXPECTED


@pytest.mark.parametrize(
    "reply", ["", "_INBOX.abc", "$JS.ACK.BOOKS.c1.2.x.17.1.5", "$JS.ACK.a.b.1.2.3.4.5.6"]
)
def test_delivery_refuses_what_is_not_a_reply(reply: str) -> None:
    with pytest.raises(InvalidMessageError):
        parse_reply(reply)


async def test_delivery_of_a_real_message_agrees_with_nats_py(bus: Bus) -> None:
    await bus.js.add_stream(name="T", subjects=["t.>"])
    for i in range(3):
        await bus.js.publish(f"t.{i}", b"x")
    sub = await bus.js.pull_subscribe("t.>", durable="d", stream="T")
    msgs = await sub.fetch(3, timeout=5)
    for msg in msgs:
        meta = delivery(msg)
        assert (meta.stream, meta.consumer) == ("T", "d")
        assert meta.stream_seq == msg.metadata.sequence.stream
        assert meta.consumer_seq == msg.metadata.sequence.consumer
        assert meta.pending == msg.metadata.num_pending
        assert meta.delivered == msg.metadata.num_delivered == 1
