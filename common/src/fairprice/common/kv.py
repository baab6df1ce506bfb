"""NATS KV buckets: their names, their keys, idempotent creation, and a consistent read.

- ``members``: ``member_key(group, member id)`` = ``<group>.<member id>`` -> heartbeat
  (``{"at": time, "ready": [keys]}``, see ``membership``); every crawler and converter
  replica (``member_keys(group)`` matches a group's).
- ``feeds``: ``feed_key(namespace, name)`` = ``<namespace>.<name>`` ->
  ``fairprice.common.feeds.Feed`` JSON; the operator.
- ``latest``: ``latest_key(exchange, symbol)`` = ``<exchange>.<SYMBOL>`` -> latest fair price
  and signal JSON; the converter writes it, the operator reads it.

Readers take a *snapshot* (every live key and value at one moment) on a short period rather
than keeping a watcher open: a snapshot is a fresh consumer each time, deleted when read, so it
is correct across broker restarts and reconnects with no state to repair.
"""

from __future__ import annotations

import contextlib
import enum
from typing import TYPE_CHECKING

import msgspec
import nats.js.errors
from nats.js import JetStreamContext, api
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KV_DEL, KV_MARKER_REASON, KV_OP, KV_PURGE, KeyValue

from fairprice.common.broker_errors import broker_errors
from fairprice.common.delivery import delivery
from fairprice.common.errors import BrokerError

if TYPE_CHECKING:  # bus imports this module (through nats_permissions)
    from fairprice.common.bus import Bus

__all__ = [
    "Bucket",
    "feed_key",
    "kv_stream",
    "latest_key",
    "member_keys",
    "member_key",
    "open_bucket",
    "snapshot",
]


class Bucket(enum.StrEnum):
    MEMBERS = "members"
    FEEDS = "feeds"
    LATEST = "latest"


def kv_stream(bucket: Bucket) -> str:
    """The stream behind a KV bucket (``KV_<bucket>``)."""
    return f"KV_{bucket.value}"


def member_key(group: str, member: str) -> str:
    return f"{group}.{member}"


def member_keys(group: str) -> str:
    """The key pattern of every member of ``group`` (its member id is the key's second part)."""
    return f"{group}.*"


def feed_key(namespace: str, name: str) -> str:
    return f"{namespace}.{name}"


def latest_key(exchange: str, symbol: str) -> str:
    return f"{exchange}.{symbol}"


async def open_bucket(
    js: JetStreamContext, bucket: Bucket, *, ttl_s: float | None = None, replicas: int = 1
) -> KeyValue:
    """The bucket, created when missing (an existing bucket is used as it is)."""
    try:
        return await js.key_value(bucket.value)
    except nats.js.errors.BucketNotFoundError:
        pass
    config = KeyValueConfig(
        bucket=bucket.value,
        history=1,
        ttl=ttl_s,
        replicas=replicas,
        storage=StorageType.FILE,
    )
    try:
        return await js.create_key_value(config)
    except nats.js.errors.BadRequestError:
        # Another replica created it between our two calls.
        return await js.key_value(bucket.value)


async def snapshot(
    bus: Bus, bucket: Bucket, keys: str = ">", *, idle_s: float = 5.0
) -> dict[str, bytes]:
    """Every live key of ``bucket`` matching ``keys`` (a subject pattern) with its value, at
    one moment.

    One ephemeral pull consumer of the last message of each key: the count of keys in its
    creation reply is what to read, nothing arrives before it is asked for, and it is deleted
    when read. nats-py's ``kv.watch`` did neither: its end-of-keys marker raced the first
    entry, so a read of a full bucket could end empty (25 of 5,400 concurrent reads of a
    one-key bucket), and its consumer stayed on the server for five minutes (its inactivity
    threshold) after each read; nats-server 2.15 takes at most 1,000 consumers a stream by
    default, which members read every heartbeat by a handful of replicas reached in minutes.

    ``BrokerError`` when the broker fails it, or sends nothing for ``idle_s`` seconds (a read
    that never ends would hang a heartbeat or a service's shutdown).
    """
    stream = kv_stream(bucket)
    config = api.ConsumerConfig(
        filter_subject=f"{_prefix(bucket)}{keys}",
        deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
        ack_policy=api.AckPolicy.NONE,
        mem_storage=True,
        inactive_threshold=_LEFTOVER_S,
    )
    with broker_errors("KV snapshot"):
        consumer = await bus.jsm.add_consumer(stream, config)
        try:
            return await _read(bus, bucket, consumer, idle_s)
        finally:
            with contextlib.suppress(BrokerError), broker_errors("KV snapshot cleanup"):
                await bus.jsm.delete_consumer(stream, consumer.name)


_LEFTOVER_S = 10.0
"""How long the server keeps a snapshot's consumer that was never deleted (its reader died)."""


def _prefix(bucket: Bucket) -> str:
    return f"$KV.{bucket.value}."


async def _read(
    bus: Bus, bucket: Bucket, consumer: api.ConsumerInfo, idle_s: float
) -> dict[str, bytes]:
    entries: dict[str, bytes] = {}
    owed = consumer.num_pending or 0
    if not owed:
        return entries
    start = len(_prefix(bucket))
    next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{kv_stream(bucket)}.{consumer.name}"
    inbox = bus.nc.new_inbox()
    sub = await bus.nc.subscribe(inbox)
    try:
        while owed:
            request = {"batch": owed, "expires": int(idle_s * 1e9)}
            await bus.nc.publish(next_subject, msgspec.json.encode(request), reply=inbox)
            for _ in range(owed):
                msg = await sub.next_msg(timeout=idle_s)
                headers = msg.headers or {}
                if not msg.data and "Status" in headers:
                    if headers["Status"] in ("404", "408"):  # no more: keys went meanwhile
                        return entries
                    raise BrokerError(f"KV snapshot: {headers.get('Description', 'refused')}")
                if headers.get(KV_OP) in (KV_DEL, KV_PURGE) or KV_MARKER_REASON in headers:
                    entries.pop(msg.subject[start:], None)
                else:
                    entries[msg.subject[start:]] = msg.data
                owed = delivery(msg).pending  # keys put since: asked for next
                if not owed:
                    break
    finally:
        with contextlib.suppress(BrokerError), broker_errors("KV snapshot cleanup"):
            await sub.unsubscribe()
    return entries
