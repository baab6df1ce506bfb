"""Dead letters: messages the storer can never store, kept for a person to look at.

A dead letter is the original payload, unchanged, published to
``deadletter.storer.<stream prefix>`` (``DEADLETTER`` stream) with headers:

- ``Fairprice-Reason``: why (the decode error, or InfluxDB's own error for the point);
- ``Fairprice-Subject``: the subject the message came from;
- ``Fairprice-Stream-Seq``: its sequence number in its stream;
- ``Nats-Msg-Id``: ``deadletter:storer:<STREAM>:<seq>``, so a message redelivered after a
  crash is dead-lettered once.

The original is acked only after JetStream stored its dead letter.
"""

from __future__ import annotations

import nats.errors
from nats.aio.msg import Msg
from nats.js import api

from fairprice.common.bus import Bus, ensure_stream
from fairprice.common.delivery import delivery
from fairprice.common.settings import StreamsSettings
from fairprice.common.subjects import (
    DEADLETTER_STREAM,
    DEADLETTER_WILDCARD,
    Stream,
    deadletter_msg_id,
    deadletter_subject,
)

__all__ = [
    "REASON_HEADER",
    "SEQ_HEADER",
    "SERVICE",
    "SUBJECT_HEADER",
    "DeadLetterError",
    "DeadLetters",
]

SERVICE = "storer"
REASON_HEADER = "Fairprice-Reason"
SUBJECT_HEADER = "Fairprice-Subject"
SEQ_HEADER = "Fairprice-Stream-Seq"
_REASON_MAX = 1000


class DeadLetterError(Exception):
    """JetStream did not store the dead letter (NATS down or slow): try again later."""


class DeadLetters:
    def __init__(self, bus: Bus, streams: StreamsSettings, max_age_s: float) -> None:
        self._bus = bus
        self._config = api.StreamConfig(
            name=DEADLETTER_STREAM,
            subjects=[DEADLETTER_WILDCARD],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE if streams.storage == "file" else api.StorageType.MEMORY,
            max_age=max_age_s,
            discard=api.DiscardPolicy.OLD,
            duplicate_window=min(streams.duplicate_window_s, max_age_s),
            num_replicas=streams.replicas,
        )

    async def ensure_stream(self) -> None:
        await ensure_stream(self._bus.jsm, self._config)

    async def send(self, stream: Stream, msg: Msg, reason: str) -> None:
        """Store ``msg`` with ``reason`` in the dead-letter stream; ``DeadLetterError`` if not."""
        seq = delivery(msg).stream_seq
        # Header values are one line of text.
        reason = " ".join(reason.split())[:_REASON_MAX]
        headers = {
            "Nats-Msg-Id": deadletter_msg_id(SERVICE, stream, seq),
            REASON_HEADER: reason,
            SUBJECT_HEADER: msg.subject,
            SEQ_HEADER: str(seq),
        }
        try:
            await self._bus.js.publish(
                deadletter_subject(SERVICE, stream), msg.data, timeout=5.0, headers=headers
            )
        except (nats.errors.Error, TimeoutError) as exc:
            raise DeadLetterError(f"dead letter not stored: {exc!r}") from exc
