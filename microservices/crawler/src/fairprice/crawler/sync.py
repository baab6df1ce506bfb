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

Windows (``window.WindowPolicy``, docs/crawler.md): a book publishes only the levels inside
its snapshot's window, and says per side how many it knows (``Book.bids_known``). When a side
runs thin (fewer known levels than the policy's ``low_water``) the engine asks for a deeper
snapshot in the background, exactly like a refresh: the live book keeps publishing, and the
new book takes over between two events, so the published update ids have no gap.

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
from fairprice.crawler.window import WindowPolicy

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
        "held",
        "limit",
        "next_limit",
        "publish_next",
        "refreshing",
        "resyncs",
        "rewindowing",
        "state",
        "symbol",
    )

    def __init__(
        self,
        symbol: str,
        buffer_limit: int,
        added_at: float,
        *,
        window_check: bool = True,
        limit: int | None = None,
    ) -> None:
        self.symbol = symbol
        self.state = State.NEW
        self.added_at = added_at
        self.book = OrderBook(window_check=window_check)
        self.buffer: deque[tuple[DepthEvent, int]] = deque(maxlen=buffer_limit)
        self.first_pending = False
        """The book holds a snapshot and no event yet: the next one must start after it."""
        self.publish_next = False
        self.refreshing = False
        """SYNCED and a refresh snapshot is on the way: applied events are kept in ``buffer``."""
        self.rewindowing = False
        """The refresh on the way is a new window for a side that ran thin."""
        self.held: Snapshot | None = None
        """A refresh snapshot newer than the live book, waiting for the stream to catch up."""
        self.limit: int | None = None
        """Levels a side of the snapshot the book was built from (``None``: not known)."""
        self.next_limit = limit
        """Levels a side to ask for in the next snapshot (``None``: the fetcher's default)."""
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
        window: WindowPolicy | None = None,
        window_check: bool = True,
    ) -> None:
        """``window``: the snapshot sizes to ask for and when to ask for a new window (None:
        never; a replay cannot ask). ``window_check=False`` publishes every level held, as
        a plain snapshot + diff book does (wrong once the price passes the window's edge)."""
        self.exchange = exchange
        self.depth = depth
        self.every_event = every_event
        self.buffer_limit = buffer_limit
        self.request_snapshot = request_snapshot
        self.window = window if window_check else None
        self.window_check = window_check
        self.symbols: dict[str, SymbolSync] = {}
        self.synced_count = 0
        self.events_applied = 0
        self.events_dropped = 0
        self.events_unowned = 0
        self.books_built = 0
        self.resyncs: Counter[str] = Counter()
        self.refreshes: Counter[str] = Counter()
        self.rewindows: Counter[int] = Counter()
        """New windows asked for, by snapshot limit."""
        self.books_short = 0
        """Books published with fewer than ``depth`` levels on a side because the window's
        edge was nearer (the side holds more, but they cannot be vouched for yet)."""

    # -- the symbol set ---------------------------------------------------------------

    def add(self, symbol: str) -> None:
        if symbol not in self.symbols:
            self.symbols[symbol] = SymbolSync(
                symbol,
                self.buffer_limit,
                time.monotonic(),
                window_check=self.window_check,
                limit=self._first_limit,
            )

    @property
    def _first_limit(self) -> int | None:
        return None if self.window is None else self.window.first_limit

    def snapshot_limit(self, symbol: str) -> int | None:
        """Levels a side to ask for in ``symbol``'s next snapshot (``None``: the default)."""
        sync = self.symbols.get(symbol)
        return None if sync is None else sync.next_limit

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
                    held = sync.held
                    if held is not None and sync.book.update_id >= held.last_id:
                        sync.held = None
                        self._refresh(sync, held)  # the stream caught up with the snapshot
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
        sync.book.load(snapshot.last_id, snapshot.bids, snapshot.asks, limit=snapshot.limit)
        sync.limit = snapshot.limit
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
        sync.next_limit = sync.limit if sync.limit is not None else self._first_limit
        self._start_refresh(sync)
        return True

    def _start_refresh(self, sync: SymbolSync, *, rewindow: bool = False) -> None:
        sync.refreshing = True
        sync.rewindowing = rewindow
        sync.held = None
        sync.buffer.clear()
        self.request_snapshot(sync.symbol)

    def snapshot_failed(self, symbol: str) -> None:
        """The fetch for ``symbol`` gave up for now: count it and ask again (a refresh is
        simply abandoned; the next one comes in its time)."""
        sync = self.symbols.get(symbol)
        if sync is not None and sync.refreshing:
            sync.refreshing = sync.rewindowing = False
            sync.held = None
            sync.buffer.clear()
            self.refreshes[RefreshOutcome.FAILED] += 1
        elif sync is not None and sync.state is State.BUFFERING:
            self._count_resync(sync, ResyncReason.SNAPSHOT_FAILED)
            self.request_snapshot(symbol)

    # -- internals ----------------------------------------------------------------------

    def _refresh(self, sync: SymbolSync, snapshot: Snapshot) -> None:
        """Rebuild the book from ``snapshot`` plus the events applied since it, in the
        background; swap it in if it reaches the live book's update id.

        A refresh checks the live book against the exchange, and a new window (``rewindow``)
        moves the edges out after a side ran thin; both swap between two events, so the live
        book publishes on meanwhile and no update id is missed. A snapshot newer than the
        live book is held until the stream has caught up with it.
        """
        live = sync.book
        if snapshot.last_id > live.update_id:
            sync.held = snapshot  # the stream lags the REST answer: wait for it
            return
        sync.refreshing = sync.rewindowing = False
        applied = [event for event, _ in sync.buffer]
        sync.buffer.clear()
        pending = [event for event in applied if event.last_id > snapshot.last_id]
        if pending and not self.exchange.starts_after(snapshot.last_id, pending[0]):
            # Older than the events kept (the buffer overflowed, or a stale answer).
            self.refreshes[RefreshOutcome.SKIPPED] += 1
            return
        fresh = OrderBook(window_check=self.window_check)
        fresh.load(snapshot.last_id, snapshot.bids, snapshot.asks, limit=snapshot.limit)
        for event in pending:
            fresh.apply(event.last_id, event.bids, event.asks, self.depth)
        depth = self.depth
        old_bids, old_asks = live.bids(depth), live.asks(depth)
        new_bids, new_asks = fresh.bids(depth), fresh.asks(depth)
        if new_bids[: len(old_bids)] != old_bids or new_asks[: len(old_asks)] != old_asks:
            # A level the live book vouched for is not what the exchange holds.
            log.warning("refresh corrected the book", symbol=sync.symbol, update_id=live.update_id)
            self.refreshes[RefreshOutcome.CORRECTED] += 1
            sync.publish_next = True  # the corrected top goes out with the next event
        else:
            self.refreshes[RefreshOutcome.OK] += 1
            if (new_bids, new_asks) != (old_bids, old_asks):
                sync.publish_next = True  # the new window shows more levels
        sync.book = fresh
        sync.limit = snapshot.limit

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
        book = sync.book
        window = self.window
        if window is not None and not sync.refreshing and book.thin(window.low_water):
            sync.next_limit = window.deeper(sync.limit)
            self.rewindows[sync.next_limit] += 1
            log.info(
                "window ran thin, deepening",
                symbol=sync.symbol,
                update_id=book.update_id,
                limit=sync.next_limit,
            )
            self._start_refresh(sync, rewindow=True)
        if not (changed or self.every_event or sync.publish_next):
            return None
        sync.publish_next = False
        self.books_built += 1
        depth = self.depth
        bids, asks = book.bids(depth), book.asks(depth)
        if book.thin(depth):
            self.books_short += 1
        return Book(
            exchange=self.exchange.name,
            symbol=sync.symbol,
            update_id=event.last_id,
            first_update_id=event.first_id,
            event_time_ms=event.event_time_ms,
            receive_time_ms=receive_ms,
            bids=bids,
            asks=asks,
            bids_known=book.known_bids(),
            asks_known=book.known_asks(),
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
        sync.book = OrderBook(window_check=self.window_check)
        sync.first_pending = False
        sync.refreshing = sync.rewindowing = False
        sync.held = None
        sync.next_limit = self._first_limit
        sync.buffer.clear()
        if event is not None:
            sync.buffer.append((event, receive_ms))
        self._count_resync(sync, reason)
        self.request_snapshot(sync.symbol)

    def _count_resync(self, sync: SymbolSync, reason: ResyncReason) -> None:
        sync.resyncs[reason] += 1
        self.resyncs[reason] += 1
