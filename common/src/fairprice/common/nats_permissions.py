"""Who may do what on NATS: the one table of each service's rights, and the subjects it grants.

Every service connects as its own NATS user (``[nats] user``/``password``, from a Kubernetes
Secret in a cluster), and the server lets each do its job and nothing else. ``GRANTS`` says it
in the project's terms (streams, buckets); ``permissions(role)`` turns one row into the
``publish``/``subscribe`` allow lists of a nats-server user. The chart's NATS configuration,
the local runs' and the test fixtures' servers (``fairprice.common.nats_config``) and
docs/kubernetes.md's table (``markdown_table()``, checked by a test) all come from here.

The rules, per stream or bucket:

- **owns**: creates it and updates its configuration (the stream's writer: BOOKS the crawler's,
  PRICES/SIGNALS/CANDLES/ALERTS the converter's, DEADLETTER the storer's, ``feeds`` the
  operator's).
- **creates**: a reader may create it when it is missing, so that start order does not matter,
  but never update it: a create of a stream that exists with another configuration is refused
  by the server, so a reader cannot change what the owner set.
- **writes**: publishes to its subjects (a stream's data, a bucket's keys).
- **reads**: its info, consumers on it (create, info, delete, next batch), acks and flow
  control of those consumers, and direct or by-subject gets.

Nobody may delete or purge a stream or bucket, or publish outside its own subjects. Replies
come to a per-user inbox prefix (``inbox_prefix(user)``: ``_INBOX.<user>``), so that no
service can read the answers (or the consumer deliveries) meant for another.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from fairprice.common.kv import Bucket, kv_stream
from fairprice.common.subjects import (
    DEADLETTER_STREAM,
    Stream,
    deadletter_subject,
    storer_deliveries_subject,
)

__all__ = [
    "GRANTS",
    "Grant",
    "Permissions",
    "Role",
    "inbox_prefix",
    "markdown_table",
    "permissions",
]


class Role(enum.StrEnum):
    """A NATS user per service; ``viewer`` is ``fairprice status`` and ``fairprice top``."""

    CRAWLER = "crawler"
    CONVERTER = "converter"
    STORER = "storer"
    OPERATOR = "operator"
    API = "api"
    VIEWER = "viewer"


def inbox_prefix(user: str) -> str:
    """Where ``user``'s replies and consumer deliveries arrive (``_INBOX.<user>.<id>``)."""
    return f"_INBOX.{user}"


@dataclass(frozen=True)
class Grant:
    """One service's rights, in streams (names) and buckets."""

    owns: tuple[str, ...] = ()
    creates: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    """Subjects it publishes (a stream's data)."""
    reads: tuple[str, ...] = ()
    """Streams (KV buckets as ``KV_<bucket>``) it reads."""
    writes_buckets: tuple[Bucket, ...] = ()
    listens: tuple[str, ...] = ()
    """Core NATS subscriptions to data subjects (the live board)."""
    lists: bool = False
    """Lists streams and consumers (``fairprice status``)."""


_DATA = (Stream.BOOKS, Stream.PRICES, Stream.SIGNALS, Stream.CANDLES, Stream.ALERTS)
_CONVERTED = (Stream.PRICES, Stream.SIGNALS, Stream.CANDLES, Stream.ALERTS)
_DELIVERIES = storer_deliveries_subject("*", "*")

GRANTS: dict[Role, Grant] = {
    Role.CRAWLER: Grant(
        owns=(Stream.BOOKS.value,),
        creates=(kv_stream(Bucket.MEMBERS), kv_stream(Bucket.FEEDS)),
        writes=(Stream.BOOKS.wildcard,),
        reads=(kv_stream(Bucket.MEMBERS), kv_stream(Bucket.FEEDS)),
        writes_buckets=(Bucket.MEMBERS,),
    ),
    Role.CONVERTER: Grant(
        owns=tuple(s.value for s in _CONVERTED),
        creates=(
            Stream.BOOKS.value,
            kv_stream(Bucket.MEMBERS),
            kv_stream(Bucket.FEEDS),
            kv_stream(Bucket.LATEST),
        ),
        writes=tuple(s.wildcard for s in _CONVERTED),
        reads=(
            Stream.BOOKS.value,
            Stream.PRICES.value,
            Stream.SIGNALS.value,
            Stream.CANDLES.value,
            kv_stream(Bucket.MEMBERS),
            kv_stream(Bucket.FEEDS),
            kv_stream(Bucket.LATEST),
        ),
        writes_buckets=(Bucket.MEMBERS, Bucket.LATEST),
    ),
    Role.STORER: Grant(
        owns=(DEADLETTER_STREAM,),
        creates=tuple(s.value for s in _DATA),
        # The replicas' announcements of what each was delivered (storer/retention.py).
        writes=(*(deadletter_subject("storer", s) for s in _DATA), _DELIVERIES),
        reads=tuple(s.value for s in _DATA),
        listens=(_DELIVERIES,),
    ),
    Role.OPERATOR: Grant(
        owns=(kv_stream(Bucket.FEEDS),),
        reads=(kv_stream(Bucket.FEEDS), kv_stream(Bucket.LATEST)),
        writes_buckets=(Bucket.FEEDS,),
    ),
    Role.API: Grant(
        creates=(Stream.PRICES.value, Stream.SIGNALS.value),
        reads=(Stream.PRICES.value, Stream.SIGNALS.value, kv_stream(Bucket.LATEST)),
    ),
    Role.VIEWER: Grant(
        reads=(Stream.ALERTS.value,),  # top reads back the last day's alerts at start
        listens=tuple(s.wildcard for s in _DATA),
        lists=True,
    ),
}
"""Each service's rights; docs/kubernetes.md shows them (``markdown_table``)."""


@dataclass(frozen=True)
class Permissions:
    """A nats-server user's ``publish`` and ``subscribe`` allow lists."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


_API = "$JS.API"
# Every request a reader makes of a stream it reads, by nats-py's subjects: the stream's info,
# consumers (nats-py names the filter in the subject: hence the `.>`), a pull consumer's next
# batch, a message by subject (PRICES' last price) directly or through the stream leader.
_READ_REQUESTS = (
    "STREAM.INFO.{s}",
    "CONSUMER.CREATE.{s}",
    "CONSUMER.CREATE.{s}.>",
    "CONSUMER.DURABLE.CREATE.{s}.*",
    "CONSUMER.INFO.{s}.*",
    "CONSUMER.DELETE.{s}.*",
    "CONSUMER.MSG.NEXT.{s}.*",
    "STREAM.MSG.GET.{s}",
    "DIRECT.GET.{s}",
    "DIRECT.GET.{s}.>",
)


def permissions(role: Role) -> Permissions:
    """The publish and subscribe subjects that ``GRANTS[role]`` allows."""
    grant = GRANTS[role]
    publish: list[str] = list(grant.writes)
    publish += [f"$KV.{bucket.value}.>" for bucket in grant.writes_buckets]
    for stream in grant.owns:
        publish += [f"{_API}.STREAM.{verb}.{stream}" for verb in ("INFO", "CREATE", "UPDATE")]
    for stream in grant.creates:
        publish += [f"{_API}.STREAM.{verb}.{stream}" for verb in ("INFO", "CREATE")]
    for stream in grant.reads:
        publish += [f"{_API}.{request.format(s=stream)}" for request in _READ_REQUESTS]
        # A consumer's acks and its answers to flow control.
        publish += [f"$JS.ACK.{stream}.>", f"$JS.FC.{stream}.>"]
    if grant.lists:
        publish += [f"{_API}.STREAM.NAMES", f"{_API}.STREAM.LIST", f"{_API}.STREAM.INFO.*"]
        publish += [f"{_API}.CONSUMER.NAMES.*", f"{_API}.CONSUMER.LIST.*"]
    subscribe = [f"{inbox_prefix(role.value)}.>", *grant.listens]
    return Permissions(publish=tuple(_unique(publish)), subscribe=tuple(subscribe))


def _unique(subjects: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(subjects))


def markdown_table() -> str:
    """``GRANTS`` as the table docs/kubernetes.md shows (one row per service)."""

    def cell(items: Iterable[str]) -> str:
        return ", ".join(f"`{item}`" for item in items) or "-"

    lines = [
        "| user | owns (create, update) | may create when missing | publishes | reads |",
        "|---|---|---|---|---|",
    ]
    for role, grant in GRANTS.items():
        writes = [*grant.writes, *(f"$KV.{b.value}.>" for b in grant.writes_buckets)]
        reads = [*grant.reads, *(f"{s} (core)" for s in grant.listens)]
        if grant.lists:
            reads.append("list streams and consumers")
        lines.append(
            f"| `{role.value}` | {cell(grant.owns)} | {cell(grant.creates)} | {cell(writes)} "
            f"| {cell(reads)} |"
        )
    return "\n".join(lines) + "\n"
