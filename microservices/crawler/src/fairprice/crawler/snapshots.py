"""The snapshot queue: symbols that need a snapshot, fetched a few at a time within budget.

``SyncEngine`` calls ``request(symbol)``; ``concurrency`` workers take symbols, fetch through
``SnapshotClient`` (which waits for the weight budget) with the limit the engine asks for
(``SyncEngine.snapshot_limit``) and hand the result back to the engine, whose unlocked books
go to ``publish``. Symbols without a book come first, then new windows for thin books, then
background refreshes, each in the order asked: at cold start every symbol syncs before the
remaining budget deepens any window. A failed attempt is retried after a jittered
exponential backoff per symbol; a 429/418 needs no backoff of its own because the budget holds
every request until ``Retry-After`` has passed. Thousands of symbols resyncing at once (a
reconnect) therefore become a steady stream of requests at the budget's rate, never a storm.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType

from fairprice.common.errors import InvalidMessageError, RateLimitedError, TransientError
from fairprice.common.logs import get_logger
from fairprice.common.messages import Book
from fairprice.common.retry import Backoff
from fairprice.crawler.rest import SnapshotClient
from fairprice.crawler.sync import State, SymbolSync, SyncEngine

__all__ = ["SnapshotFetcher"]

log = get_logger(__name__)


class SnapshotFetcher:
    """``async with SnapshotFetcher(engine, client, publish):`` runs the workers."""

    def __init__(
        self,
        engine: SyncEngine,
        client: SnapshotClient,
        publish: Callable[[list[Book]], Awaitable[None]],
        *,
        concurrency: int = 2,
        retry_base_s: float = 1.0,
        retry_max_s: float = 60.0,
        on_outcome: Callable[[str], None] = lambda _outcome: None,
    ) -> None:
        self._engine = engine
        self._client = client
        self._publish = publish
        self._concurrency = concurrency
        self._backoff = Backoff(retry_base_s, retry_max_s)
        self._on_outcome = on_outcome
        self._queue: asyncio.PriorityQueue[tuple[int, int, str]] = asyncio.PriorityQueue()
        self._order = 0
        self._queued: set[str] = set()
        self._attempts: dict[str, int] = {}
        self._retries: dict[str, asyncio.TimerHandle] = {}
        self._workers: list[asyncio.Task[None]] = []

    @property
    def waiting(self) -> int:
        return len(self._queued) + len(self._retries)

    def request(self, symbol: str) -> None:
        """Queue ``symbol`` unless it is queued or waiting for a retry already."""
        if symbol in self._queued or symbol in self._retries:
            return
        self._queued.add(symbol)
        self._order += 1
        self._queue.put_nowait((_priority(self._engine.symbols.get(symbol)), self._order, symbol))

    async def __aenter__(self) -> SnapshotFetcher:
        self._workers = [
            asyncio.create_task(self._work(), name=f"snapshot-worker-{n}")
            for n in range(self._concurrency)
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            _, _, symbol = await self._queue.get()
            self._queued.discard(symbol)
            sync = self._engine.symbols.get(symbol)
            if sync is None or not (sync.state is State.BUFFERING or sync.refreshing):
                continue  # removed, or synced by an earlier snapshot meanwhile
            try:
                snapshot = await self._client.fetch(symbol, self._engine.snapshot_limit(symbol))
                books = self._engine.on_snapshot(symbol, snapshot)
            except RateLimitedError:
                self._on_outcome("rate_limited")
                self._engine.snapshot_failed(symbol)  # the budget waits for Retry-After
                continue
            except (TransientError, InvalidMessageError) as exc:
                # InvalidMessageError: a snapshot level that is not a decimal number.
                self._on_outcome("error")
                self._retry_later(symbol, exc)
                continue
            self._on_outcome("ok")
            self._attempts.pop(symbol, None)
            if books:
                await self._publish(books)

    def _retry_later(self, symbol: str, exc: Exception) -> None:
        attempt = self._attempts.get(symbol, 0)
        self._attempts[symbol] = attempt + 1
        delay = self._backoff.delay(attempt)
        log.warning("snapshot failed", symbol=symbol, error=str(exc), retry_in_s=round(delay, 2))
        self._retries[symbol] = asyncio.get_running_loop().call_later(delay, self._retry, symbol)

    def _retry(self, symbol: str) -> None:
        del self._retries[symbol]
        self._engine.snapshot_failed(symbol)


def _priority(sync: SymbolSync | None) -> int:
    """0: no book yet (or a resync), 1: a new window for a thin book, 2: a refresh."""
    if sync is None or not sync.refreshing:
        return 0
    return 1 if sync.rewindowing else 2
