"""What the crawler needs to know about an exchange: the adapter interface.

Everything else (the book, the sync state machine, snapshot pacing, connections, publishing,
ownership, recording) is exchange-neutral and talks to an exchange only through ``Exchange``.
A second exchange is one new module implementing it (``binance.py`` is the first) plus its
line in ``adapters.EXCHANGES``.

Parsed traffic comes back as the small types below; ``Frame`` is what one WebSocket text
frame turned out to be.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from fairprice.common.messages import Level

__all__ = [
    "Control",
    "DepthEvent",
    "Exchange",
    "Frame",
    "Ignored",
    "Snapshot",
    "SnapshotRequest",
]


@dataclass(frozen=True, slots=True)
class DepthEvent:
    """One diff event: the updates ``first_id..last_id`` of ``symbol``'s book."""

    symbol: str
    first_id: int
    last_id: int
    event_time_ms: int
    bids: list[Level]
    asks: list[Level]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A REST depth snapshot, as of update id ``last_id``."""

    last_id: int
    bids: list[Level]
    asks: list[Level]
    limit: int | None = None
    """Levels a side that were asked for (``None``: not known, e.g. in a recording); a side
    with fewer is the whole side."""


@dataclass(frozen=True, slots=True)
class Control:
    """A frame about the connection rather than a book: ``shutdown`` means the server is going
    away soon (move to a new connection now); ``reply`` answers a method message."""

    kind: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Ignored:
    """A frame the crawler does not use (another stream, e.g. a ticker)."""

    stream: str


Frame = DepthEvent | Control | Ignored


@dataclass(frozen=True, slots=True)
class SnapshotRequest:
    """``GET path?params`` on the REST base URL; ``weight`` is what it costs in the budget."""

    path: str
    params: dict[str, str | int]
    weight: int


class Exchange(Protocol):
    """The exchange adapter: wire format, limits and sync rules of one exchange."""

    name: str
    """Lower-case name used in subjects and message ids (``books.<name>.<SYMBOL>``)."""
    max_streams_per_connection: int
    max_messages_per_second: float
    """Method messages (subscribe, unsubscribe) a connection may send per second."""
    max_weight_per_minute: int
    """The REST request-weight limit per minute when the exchange does not say (the budget
    asks it first: ``limits_request``)."""
    snapshot_limits: tuple[int, ...]
    """The snapshot sizes at which the request weight steps up, ascending (the largest is
    the deepest snapshot there is)."""
    max_connection_s: float
    """The server ends a connection after this long; a new one is opened before then."""

    def depth_stream(self, symbol: str) -> str:
        """The diff-event stream name of ``symbol``."""
        ...

    def connection_url(self, ws_url: str) -> str:
        """The URL of one combined-stream connection with no stream subscribed yet."""
        ...

    def subscribe_message(self, streams: list[str], request_id: int, subscribe: bool) -> str:
        """The method message (un)subscribing ``streams``."""
        ...

    def parse_frame(self, data: str | bytes) -> Frame:
        """One WebSocket text frame; ``InvalidMessageError`` when malformed."""
        ...

    def snapshot_request(self, symbol: str, limit: int) -> SnapshotRequest: ...

    def limits_request(self, symbol: str | None) -> SnapshotRequest:
        """The request that tells the exchange's request-weight limit (``parse_weight_limit``),
        about ``symbol`` alone when given (a smaller answer)."""
        ...

    def parse_weight_limit(self, body: bytes) -> int | None:
        """The request weight allowed per minute, from a ``limits_request`` answer (``None``
        if it does not say); ``InvalidMessageError`` when malformed."""
        ...

    def parse_snapshot(self, body: bytes) -> Snapshot:
        """A snapshot response body; ``InvalidMessageError`` when malformed."""
        ...

    def snapshot_symbol(self, url: str) -> str | None:
        """The symbol whose snapshot ``url`` requests (None: not a snapshot request); lets a
        recording be replayed."""
        ...

    def snapshot_limit(self, url: str) -> int | None:
        """The levels a side that snapshot request ``url`` asked for (None: not known)."""
        ...

    def used_weight(self, headers: Mapping[str, str]) -> int | None:
        """The weight used in the current minute as reported by a REST response."""
        ...

    def is_stale(self, snapshot_id: int, first_buffered: DepthEvent) -> bool:
        """Whether a snapshot is too old for the first buffered event (fetch another)."""
        ...

    def starts_after(self, snapshot_id: int, event: DepthEvent) -> bool:
        """Whether ``event`` may be the first one applied on a snapshot as of ``snapshot_id``."""
        ...

    def continues(self, book_id: int, event: DepthEvent) -> bool:
        """Whether ``event`` follows a book at ``book_id`` with no gap."""
        ...
