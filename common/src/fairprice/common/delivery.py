"""What a delivered JetStream message says about itself: ``delivery(msg)``.

The server puts a delivered message's metadata in its reply subject, in one of two layouts:

    $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>                 (9)
    $JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>[.<token>]
                                                                                     (11, 12+)

the short one from servers before 2.9 (and still from 2.9 without a domain), the long one with
a JetStream domain and account hash. nats-py's ``Msg.metadata`` parses both too, into
datetimes and dataclasses; this is the same parse at the cost of one ``split``, because the
converter and the storer read it for every message. Every consumer of the project uses it.
"""

from __future__ import annotations

from typing import NamedTuple

from nats.aio.msg import Msg

from fairprice.common.errors import InvalidMessageError

__all__ = ["Delivery", "delivery", "parse_reply"]

_SHORT = 9
_LONG = 11  # without the trailing random token; 12 with it


class Delivery(NamedTuple):
    """A message's place in its stream and consumer."""

    stream: str
    consumer: str
    delivered: int
    """How many times the message has been delivered (1 the first time)."""
    stream_seq: int
    consumer_seq: int
    timestamp_ns: int
    pending: int
    """Messages of the consumer's filter the server had not delivered yet."""


def parse_reply(reply: str) -> Delivery:
    """The metadata of a JetStream reply subject (either layout); ``InvalidMessageError``
    when ``reply`` is not one."""
    tokens = reply.split(".")
    count = len(tokens)
    if count < _SHORT or tokens[0] != "$JS" or tokens[1] != "ACK" or _SHORT < count < _LONG:
        raise InvalidMessageError(f"not a JetStream reply subject: {reply!r}")
    base = 2 if count == _SHORT else 4
    try:
        return Delivery(
            tokens[base],
            tokens[base + 1],
            int(tokens[base + 2]),
            int(tokens[base + 3]),
            int(tokens[base + 4]),
            int(tokens[base + 5]),
            int(tokens[base + 6]),
        )
    except ValueError as exc:
        raise InvalidMessageError(f"not a JetStream reply subject: {reply!r}") from exc


def delivery(msg: Msg) -> Delivery:
    """The JetStream metadata of ``msg``, from its reply subject."""
    return parse_reply(msg.reply or "")
