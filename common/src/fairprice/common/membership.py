"""Who is alive in a group of replicas, and which of them owns a key.

Each replica puts a heartbeat under ``<group>.<member id>`` in the ``members`` KV bucket every
``heartbeat_s``; the bucket's TTL removes the key of a replica that stopped heartbeating (a
kill -9), and a replica that stops cleanly deletes its own key at once. Every replica reads the
same live set, and ownership is rendezvous hashing over it: each key goes to the ``redundancy``
members with the highest ``hash(member, key)``. All replicas compute the same owners without
talking to each other, and a join or leave moves only the keys of the member that came or went.

A heartbeat also says which keys its member is *ready* with (``ready=``: a crawler's synced
symbols), so that a replica handing a key over can keep working on it until every new owner
says it is ready (``taken_over``) rather than for a fixed time: under load, or with hundreds
of symbols to sync, a new owner can take longer than any fixed handoff.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from types import TracebackType

import msgspec
from nats.js.kv import KeyValue

from fairprice.common.broker_errors import broker_errors
from fairprice.common.bus import Bus
from fairprice.common.errors import BrokerError
from fairprice.common.kv import Bucket, member_key, member_keys, open_bucket, snapshot
from fairprice.common.lifecycle import wait_or_stop
from fairprice.common.logs import get_logger

__all__ = ["Membership", "rendezvous_owners"]

log = get_logger(__name__)


class _Heartbeat(msgspec.Struct):
    at: float
    ready: list[str] = []


_decode_heartbeat = msgspec.json.Decoder(_Heartbeat).decode


def rendezvous_owners(key: str, members: tuple[str, ...], redundancy: int = 1) -> list[str]:
    """The ``redundancy`` members that own ``key`` (highest random weight first)."""

    def weight(member: str) -> bytes:
        return hashlib.blake2b(f"{member}\x00{key}".encode(), digest_size=8).digest()

    return sorted(members, key=weight, reverse=True)[:redundancy]


class Membership:
    """``async with Membership(bus, "crawler") as m: m.owns("BTCUSDT")``.

    ``members`` is the live set, sorted; ``version`` increases whenever it changes, and
    ``changed()`` waits for the next change.
    """

    def __init__(
        self,
        bus: Bus,
        group: str,
        *,
        member_id: str | None = None,
        heartbeat_s: float = 1.0,
        ttl_s: float = 5.0,
        ready: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        self._bus = bus
        self.group = group
        self.member_id = member_id or _default_member_id()
        self._heartbeat_s = heartbeat_s
        self._ttl_s = ttl_s
        self._ready = ready
        self.members: tuple[str, ...] = ()
        self.ready_keys: dict[str, frozenset[str]] = {}
        """The keys each live member said it is ready with, as of the last read."""
        self.version = 0
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._kv: KeyValue | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def _key(self) -> str:
        return member_key(self.group, self.member_id)

    async def __aenter__(self) -> Membership:
        self._kv = await open_bucket(self._bus.js, Bucket.MEMBERS, ttl_s=self._ttl_s)
        await self._beat()
        self._task = asyncio.create_task(self._loop(), name=f"membership-{self.group}")
        log.info("joined", group=self.group, member=self.member_id, members=list(self.members))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.leave()

    async def leave(self) -> None:
        """Stop heartbeating and delete our key now, so the others rebalance at once (before
        this replica stops working, for a handover with no gap); idempotent."""
        if self._task is not None:
            # Stopped, not cancelled: the heartbeat under way (a put and a read) ends whole.
            self._stopping.set()
            _, running = await asyncio.wait({self._task}, timeout=self._ttl_s)
            for task in running:  # a heartbeat stuck on a broker that went away
                task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._kv is not None and not self._bus.nc.is_closed:
            kv, self._kv = self._kv, None
            try:
                with broker_errors("leave"):
                    await kv.delete(self._key)
                log.info("left", group=self.group, member=self.member_id)
            except BrokerError:
                pass  # the TTL removes it instead

    def owners(self, key: str, redundancy: int = 1) -> list[str]:
        return rendezvous_owners(key, self.members, redundancy)

    def owns(self, key: str, redundancy: int = 1) -> bool:
        return self.member_id in self.owners(key, redundancy)

    def taken_over(self, key: str, redundancy: int = 1) -> bool:
        """Every owner of ``key`` other than this member says it is ready with it."""
        return all(
            key in self.ready_keys.get(owner, ())
            for owner in self.owners(key, redundancy)
            if owner != self.member_id
        )

    async def refresh(self) -> None:
        """Read the live set and what each member is ready with, without a heartbeat (after
        ``leave``, while handing over)."""
        with broker_errors("membership read"):
            await self._read()

    async def changed(self) -> tuple[str, ...]:
        """Wait until the live set changes; return the new set."""
        self._changed.clear()
        await self._changed.wait()
        return self.members

    async def _loop(self) -> None:
        while not await wait_or_stop(self._stopping, self._heartbeat_s):
            try:
                with broker_errors("heartbeat"):
                    await self._beat()
            except BrokerError as exc:
                # A broker restart: keep the last known set; heartbeats resume with it.
                log.warning("heartbeat failed", group=self.group, error=str(exc) or repr(exc))

    async def _beat(self) -> None:
        assert self._kv is not None
        beat = _Heartbeat(at=round(time.time(), 3), ready=sorted(self._ready()))
        await self._kv.put(self._key, msgspec.json.encode(beat))
        await self._read()

    async def _read(self) -> None:
        live = await snapshot(self._bus, Bucket.MEMBERS, member_keys(self.group))
        ready: dict[str, frozenset[str]] = {}
        for key, value in live.items():
            member = key.split(".", 1)[1]
            try:
                ready[member] = frozenset(_decode_heartbeat(value).ready)
            except msgspec.DecodeError:  # a replica of a version that sent only the time
                ready[member] = frozenset()
        self.ready_keys = ready
        members = tuple(sorted(ready))
        if self._kv is not None and self.member_id not in members:
            # Our own put is always visible to us (until we leave).
            members = tuple(sorted((*members, self.member_id)))
        if members != self.members:
            if self.members:
                log.info("members changed", group=self.group, members=list(members))
            self.members = members
            self.version += 1
            self._changed.set()


def _default_member_id() -> str:
    # The pod name in Kubernetes (HOSTNAME), plus the pid and a random suffix so that a
    # restarted process never inherits the heartbeat of its previous life.
    host = os.environ.get("HOSTNAME") or socket.gethostname()
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in host)
    return f"{safe}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
