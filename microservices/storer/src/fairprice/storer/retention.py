"""Messages a stream discarded (its ``max_bytes`` or ``max_age``, discard old) before the
storer's consumer delivered them: stored nowhere, and counted here.

The storer's consumers take every subject of their stream, so JetStream delivers each message
of the stream once in stream order (plus redeliveries). Every delivery carries its stream and
consumer sequence (``delivery(msg)``). Between two first deliveries that this replica received
with no other delivery in between (consecutive consumer sequences), a jump of the stream
sequence is exactly the messages that are gone: nobody was given them. When deliveries went to
another replica in between (several storers share a durable), the jump is not counted, since
that replica holds those messages; so losses are never counted twice, and counted exactly with
one replica (the default) and at any gap inside one replica's run of deliveries.

Messages delivered and held while InfluxDB is down are not lost when the stream discards them:
the storer writes them from memory once InfluxDB is back.
"""

from __future__ import annotations

from nats.aio.msg import Msg
from nats.js.api import ConsumerInfo
from prometheus_client import Counter

from fairprice.common.delivery import delivery
from fairprice.common.logs import get_logger

__all__ = ["RetentionLosses"]

log = get_logger(__name__)


class RetentionLosses:
    """Counts the messages of one consumer's stream that were discarded before delivery."""

    def __init__(self, stream: str, lost: Counter) -> None:
        self._stream = stream
        self._lost = lost
        self._consumer_seq = -1  # unknown: the first delivery only sets the position
        self._stream_seq = 0

    def start_at(self, info: ConsumerInfo) -> None:
        """Take the consumer's position from its info (at start: a loss while no storer ran
        is seen in the first delivery)."""
        if info.delivered is not None:
            self._consumer_seq = info.delivered.consumer_seq or 0
            self._stream_seq = info.delivered.stream_seq or 0

    def observe(self, msgs: list[Msg]) -> None:
        """Account for ``msgs``, in the order this replica received them."""
        for msg in msgs:
            meta = delivery(msg)
            seen_all = meta.consumer_seq == self._consumer_seq + 1
            self._consumer_seq = meta.consumer_seq
            if meta.delivered != 1:
                continue  # a redelivery: its stream sequence was seen on its first delivery
            gone = meta.stream_seq - self._stream_seq - 1
            if seen_all and gone > 0:
                self._lost.inc(gone)
                log.error(
                    "messages discarded by the stream before they were stored",
                    stream=self._stream,
                    first_seq=self._stream_seq + 1,
                    last_seq=meta.stream_seq - 1,
                    count=gone,
                )
            self._stream_seq = max(self._stream_seq, meta.stream_seq)
