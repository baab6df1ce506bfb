"""Keeping many books in sync: the snapshot + diff state machine, one per symbol.

Each symbol goes through:

    NEW ──first event (or quiet)──> BUFFERING ──snapshot──> SYNCED
                                       ^    └─stale snapshot: buffer kept, fetch another
                                       └──── gap (an event does not continue the book) ──┘

- BUFFERING keeps every event (oldest dropped past ``buffer_limit``) and asks for a snapshot
  once, through ``request_snapshot(symbol)``. The snapshot is requested when the first event
  is in the buffer, so it is rarely older than that event. A quiet symbol (an illiquid market
  sends no diff event while its book does not change) is started by ``start_quiet`` with an
  empty buffer; its first event must then start right after the snapshot, as usual.
- A snapshot older than the first buffered event (``Exchange.is_stale``) is discarded and
  another requested. Otherwise the book is loaded, buffered events already covered by the
  snapshot (``last_id <= snapshot id``) are dropped, the first remaining one must satisfy
  ``Exchange.starts_after`` and each later one ``Exchange.continues``; any failure is a gap.
- SYNCED applies each event that continues the book, ignores events it already holds
  (``last_id <= book id``: an overlapping second connection sends them twice), and on a gap
  discards THIS symbol's book and buffers from the event that showed the gap; every other
  symbol goes on untouched.

Every applied event that changed the top ``depth`` levels (or every applied event with
``every_event``) yields the ``Book`` message to publish. The first event applied after a
snapshot always yields one: the consumers have not seen this book yet.

The engine is plain synchronous code with no I/O, so the live crawler, the offline replay and
the benchmark drive exactly the same logic.
"""

from __future__ import annotations

import enum
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable

from fairprice.common.errors import InvalidMessageError
from fairprice.common.logs import get_logger
from fairprice.common.messages import Book
from fairprice.crawler.book import OrderBook
from fairprice.crawler.exchange import DepthEvent, Exchange, Snapshot

__all__ = ["RefreshOutcome", "ResyncReason", "State", "SymbolSync", "SyncEngine"]

log = get_logger(__name__)


class State(enum.Enum):
    NEW = "new"
    BUFFERING = "buffering"
    SYNCED = "synced"


class ResyncReason(enum.StrEnum):
    """Why a symbol needs a snapshot (the ``reason`` label of the resync metric)."""

    INITIAL = "initial"
    GAP = "gap"
    STALE_SNAPSHOT = "stale_snapshot"
    SNAPSHOT_FAILED = "snapshot_failed"
    INVALID_EVENT = "invalid_event"


class RefreshOutcome(enum.StrEnum):
    """How a background refresh ended (the ``outcome`` label of the refresh metric)."""

    OK = "ok"
    CORRECTED = "corrected"
    SKIPPED = "skipped"
    FAILED = "failed"


class SymbolSync:
    """The book of one symbol and where it stands in the sync procedure."""

    __slots__ = (
        "applied",
        "book",
        "buffer",
        "dropped",
        "events",
        "added_at",
        "first_pending",
        "publish_next",
        "refreshing",
        "resyncs",
        "state",
        "symbol",
    )

    def __init__(self, symbol: str, buffer_limit: int, added_at: float) -> None:
        self.symbol = symbol
        self.state = State.NEW
        self.added_at = added_at
        self.book = OrderBook()
        self.buffer: deque[tuple[DepthEvent, int]] = deque(maxlen=buffer_limit)
        self.first_pending = False
        """The book holds a snapshot and no event yet: the next one must start after it."""
        self.publish_next = False
        self.refreshing = False
        """SYNCED and a refresh snapshot is on the way: applied events are kept in ``buffer``."""
        self.events = 0
        self.applied = 0
        self.dropped = 0
        self.resyncs: Counter[str] = Counter()

    @property
    def synced(self) -> bool:
        return self.state is State.SYNCED


class SyncEngine:
    """Books of many symbols of one exchange.

    ``request_snapshot(symbol)`` is called whenever a symbol needs a snapshot; whoever fetches
    it hands it back through ``on_snapshot`` (or ``snapshot_failed``).
    """

    def __init__(
        self,
        exchange: Exchange,
        *,
        depth: int = 20,
        every_event: bool = False,
        buffer_limit: int = 10_000,
        request_snapshot: Callable[[str], None] = lambda _symbol: None,
    ) -> None:
        self.exchange = exchange
        self.depth = depth
        self.every_event = every_event
        self.buffer_limit = buffer_limit
        self.request_snapshot = request_snapshot
        self.symbols: dict[str, SymbolSync] = {}
        self.synced_count = 0
        self.events_applied = 0
        self.events_dropped = 0
        self.events_unowned = 0
        self.books_built = 0
        self.resyncs: Counter[str] = Counter()
        self.refreshes: Counter[str] = Counter()

    # -- the symbol set ---------------------------------------------------------------

    def add(self, symbol: str) -> None:
        if symbol not in self.symbols:
            self.symbols[symbol] = SymbolSync(symbol, self.buffer_limit, time.monotonic())

    def remove(self, symbol: str) -> None:
        sync = self.symbols.pop(symbol, None)
        if sync is not None and sync.synced:
            self.synced_count -= 1

    def update(self, symbols: Iterable[str]) -> tuple[set[str], set[str]]:
        """Make the set exactly ``symbols``; return ``(added, removed)``."""
        wanted = set(symbols)
        added = wanted - self.symbols.keys()
        removed = self.symbols.keys() - wanted
        for symbol in removed:
            self.remove(symbol)
        for symbol in added:
            self.add(symbol)
        return added, removed

    # -- traffic ----------------------------------------------------------------------

    def on_event(self, event: DepthEvent, receive_ms: int) -> Book | None:
        """Feed one diff event; the book to publish, if this event changed it."""
        sync = self.symbols.get(event.symbol)
        if sync is None:
            self.events_unowned += 1  # a stream being unsubscribed
            return None
        sync.events += 1
        if sync.state is State.SYNCED:
            book = sync.book
            if event.last_id <= book.update_id:
                sync.dropped += 1
                self.events_dropped += 1
                return None
            if sync.first_pending:
                ok = self.exchange.starts_after(book.update_id, event)
            else:
                ok = self.exchange.continues(book.update_id, event)
            if ok:
                published = self._apply(sync, event, receive_ms)
                if sync.refreshing:
                    sync.buffer.append((event, receive_ms))
                return published
            self._resync(sync, ResyncReason.GAP, event, receive_ms)
            return None
        if sync.state is State.NEW:
            self._resync(sync, ResyncReason.INITIAL, event, receive_ms)
            return None
        sync.buffer.append((event, receive_ms))
        return None

    def on_snapshot(self, symbol: str, snapshot: Snapshot) -> list[Book]:
        """Hand over a snapshot; the books to publish from the buffered events it unlocked."""
        sync = self.symbols.get(symbol)
        if sync is not None and sync.refreshing:
            self._refresh(sync, snapshot)
            return []
        if sync is None or sync.state is not State.BUFFERING:
            return []  # removed meanwhile, or a snapshot nobody waits for (a replay)
        if sync.buffer and self.exchange.is_stale(snapshot.last_id, sync.buffer[0][0]):
            log.info(
                "stale snapshot",
                symbol=symbol,
                snapshot_id=snapshot.last_id,
                first_buffered=sync.buffer[0][0].first_id,
            )
            self._count_resync(sync, ResyncReason.STALE_SNAPSHOT)
            self.request_snapshot(symbol)
            return []
        sync.book.load(snapshot.last_id, snapshot.bids, snapshot.asks)
        sync.state = State.SYNCED
        sync.first_pending = True
        sync.publish_next = True
        self.synced_count += 1
        buffered = list(sync.buffer)
        sync.buffer.clear()
        books: list[Book] = []
        for index, (event, receive_ms) in enumerate(buffered):
            sync.events -= 1  # counted once already when buffered
            book = self.on_event(event, receive_ms)
            if book is not None:
                books.append(book)
            if sync.state is not State.SYNCED:  # a gap inside the buffer: keep the rest
                sync.buffer.extend(buffered[index + 1 :])
                break
        return books

    def start_quiet(self, after_s: float) -> int:
        """Ask for the snapshot of every symbol that has had no event ``after_s`` seconds after
        it was added; return how many."""
        before = time.monotonic() - after_s
        quiet = [s for s in self.symbols.values() if s.state is State.NEW and s.added_at < before]
        for sync in quiet:
            sync.state = State.BUFFERING
            self._count_resync(sync, ResyncReason.INITIAL)
            self.request_snapshot(sync.symbol)
        return len(quiet)

    def refresh(self, symbol: str) -> bool:
        """Check a synced book against a fresh snapshot without interrupting it (see
        ``_refresh``); whether a refresh was started."""
        sync = self.symbols.get(symbol)
        if sync is None or sync.state is not State.SYNCED or sync.refreshing:
            return False
        sync.refreshing = True
        sync.buffer.clear()
        self.request_snapshot(symbol)
        return True

    def snapshot_failed(self, symbol: str) -> None:
        """The fetch for ``symbol`` gave up for now: count it and ask again (a refresh is
        simply abandoned; the next one comes in its time)."""
        sync = self.symbols.get(symbol)
        if sync is not None and sync.refreshing:
            sync.refreshing = False
            sync.buffer.clear()
            self.refreshes[RefreshOutcome.FAILED] += 1
        elif sync is not None and sync.state is State.BUFFERING:
            self._count_resync(sync, ResyncReason.SNAPSHOT_FAILED)
            self.request_snapshot(symbol)

    # -- internals ----------------------------------------------------------------------

    def _refresh(self, sync: SymbolSync, snapshot: Snapshot) -> None:
        """Rebuild the book from ``snapshot`` plus the events applied since it, in the
        background; swap it in if it reaches the live book's update id.

        A book only learns the levels of its snapshot and those that changed since: a level
        outside the snapshot's depth that never changes stays unknown, and shows up missing
        when the price moves to it (Binance's documentation warns of this). Refreshing each
        book now and then repairs that with no gap: the live book keeps publishing while the
        new one catches up, and the swap happens between two events.
        """
        sync.refreshing = False
        applied = [event for event, _ in sync.buffer]
        sync.buffer.clear()
        live = sync.book
        pending = [event for event in applied if event.last_id > snapshot.last_id]
        if snapshot.last_id > live.update_id or (
            pending and not self.exchange.starts_after(snapshot.last_id, pending[0])
        ):
            # Newer than the live book (the stream lags), or older than the events kept.
            self.refreshes[RefreshOutcome.SKIPPED] += 1
            return
        fresh = OrderBook()
        fresh.load(snapshot.last_id, snapshot.bids, snapshot.asks)
        for event in pending:
            fresh.apply(event.last_id, event.bids, event.asks, self.depth)
        depth = self.depth
        if (fresh.bids(depth), fresh.asks(depth)) != (live.bids(depth), live.asks(depth)):
            log.warning("refresh corrected the book", symbol=sync.symbol, update_id=live.update_id)
            self.refreshes[RefreshOutcome.CORRECTED] += 1
            sync.publish_next = True  # the corrected top goes out with the next event
        else:
            self.refreshes[RefreshOutcome.OK] += 1
        sync.book = fresh

    def _apply(self, sync: SymbolSync, event: DepthEvent, receive_ms: int) -> Book | None:
        try:
            changed = sync.book.apply(event.last_id, event.bids, event.asks, self.depth)
        except InvalidMessageError as exc:
            # Possibly half applied: this book cannot be trusted any more.
            log.warning("invalid event, resyncing", symbol=sync.symbol, error=str(exc))
            self._resync(sync, ResyncReason.INVALID_EVENT, None, receive_ms)
            return None
        sync.first_pending = False
        sync.applied += 1
        self.events_applied += 1
        if not (changed or self.every_event or sync.publish_next):
            return None
        sync.publish_next = False
        self.books_built += 1
        depth = self.depth
        return Book(
            exchange=self.exchange.name,
            symbol=sync.symbol,
            update_id=event.last_id,
            first_update_id=event.first_id,
            event_time_ms=event.event_time_ms,
            receive_time_ms=receive_ms,
            bids=sync.book.bids(depth),
            asks=sync.book.asks(depth),
        )

    def _resync(
        self, sync: SymbolSync, reason: ResyncReason, event: DepthEvent | None, receive_ms: int
    ) -> None:
        """Discard the book; buffer from ``event`` (None: from the next one) for a snapshot."""
        if sync.state is State.SYNCED:
            self.synced_count -= 1
            if event is not None:
                log.warning(
                    "gap, resyncing",
                    symbol=sync.symbol,
                    book_id=sync.book.update_id,
                    first_id=event.first_id,
                    last_id=event.last_id,
                )
        sync.state = State.BUFFERING
        sync.book = OrderBook()
        sync.first_pending = False
        sync.refreshing = False
        sync.buffer.clear()
        if event is not None:
            sync.buffer.append((event, receive_ms))
        self._count_resync(sync, reason)
        self.request_snapshot(sync.symbol)

    def _count_resync(self, sync: SymbolSync, reason: ResyncReason) -> None:
        sync.resyncs[reason] += 1
        self.resyncs[reason] += 1
