"""NATS KV buckets: their names, their keys, idempotent creation, and a consistent read.

- ``members``: ``member_key(group, member id)`` = ``<group>.<member id>`` -> heartbeat
  (``{"at": time, "ready": [keys]}``, see ``membership``); every crawler and converter
  replica (``member_keys(group)`` matches a group's).
- ``feeds``: ``feed_key(namespace, name)`` = ``<namespace>.<name>`` ->
  ``fairprice.common.feeds.Feed`` JSON; the operator.
- ``latest``: ``latest_key(exchange, symbol)`` = ``<exchange>.<SYMBOL>`` -> latest fair price
  and signal JSON; the converter writes it, the operator reads it.

Readers take a *snapshot* (every live key and value at one moment) on a short period rather
than keeping a watcher open: a snapshot is a fresh ordered consumer each time, so it is correct
across broker restarts and reconnects with no state to repair.
"""

from __future__ import annotations

import enum

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from fairprice.common.broker_errors import broker_errors

__all__ = [
    "Bucket",
    "feed_key",
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


async def snapshot(kv: KeyValue, keys: str = ">", *, idle_s: float = 5.0) -> dict[str, bytes]:
    """Every live key matching ``keys`` (a subject pattern) with its value, at one moment.

    ``BrokerError`` when the broker fails it, or sends nothing for ``idle_s`` seconds:
    iterating a watcher has no deadline of its own, and a read that never ends would hang a
    heartbeat or a service's shutdown.
    """
    with broker_errors("KV snapshot"):
        return await _snapshot(kv, keys, idle_s)


async def _snapshot(kv: KeyValue, keys: str, idle_s: float) -> dict[str, bytes]:
    watcher = await kv.watch(keys)
    entries: dict[str, bytes] = {}
    try:
        while True:
            entry = await watcher.updates(idle_s)  # type: ignore[no-untyped-call]
            if entry is None:
                break
            if entry.operation in (KV_DEL, KV_PURGE):
                entries.pop(entry.key, None)
            else:
                entries[entry.key] = entry.value or b""
            if entry.delta == 0:
                break
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]  # unannotated in nats-py
    return entries
