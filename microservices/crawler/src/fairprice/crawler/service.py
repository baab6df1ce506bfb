"""The crawler service: owned symbols -> streams + snapshots -> books -> ``books.<ex>.<SYM>``.

- The symbol set is ``[crawler] symbols`` plus every enabled feed of this exchange in the
  ``feeds`` KV bucket, re-read every ``feeds_refresh_s`` (no restart to add or remove one).
- Of those, this replica crawls the ones it owns: rendezvous hashing over the live members of
  the ``crawler`` group, each symbol owned by ``redundancy`` replicas. Ownership is recomputed
  when a replica joins or leaves. Redundant replicas publish the same books with the same
  ``Nats-Msg-Id`` (``<exchange>:<SYMBOL>:<update id>``), which JetStream deduplicates.
- ``/readyz`` is 200 once NATS is connected and every owned symbol is synced; progress shows
  in the log as "synced N of M" with an estimate of the time left, and in the metrics.
- Snapshot weight: the budget is the exchange's stated limit (``exchangeInfo``) less
  ``weight_reserve``; every symbol first gets the smallest snapshot that covers ``depth`` with
  a margin, and windows that run thin are deepened later (``window``).

Shutdown (SIGTERM): not ready, leave the group (the other replicas take over at once) and keep
crawling until every new owner says in its heartbeat that it has synced our symbols (at most
``handoff_s``), then stop streams and snapshots, flush unacked books, drain NATS, close HTTP.
A symbol that moves to a joining replica is likewise crawled until its new owner has it
synced, so rebalancing loses no update with any ``redundancy``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import httpx
from prometheus_client import CollectorRegistry

from fairprice.common.bus import Bus, connect_bus, ensure_streams
from fairprice.common.errors import BrokerError, RateLimitedError, TransientError
from fairprice.common.feeds import read_feeds
from fairprice.common.health import HealthServer, Readiness
from fairprice.common.kv import Bucket, open_bucket
from fairprice.common.lifecycle import install_signal_handlers, wait_or_stop
from fairprice.common.logs import get_logger
from fairprice.common.membership import Membership
from fairprice.common.messages import Book, encode
from fairprice.common.publisher import Publisher
from fairprice.common.subjects import Stream, book_msg_id, books_subject
from fairprice.crawler.adapters import exchange_for
from fairprice.crawler.budget import WeightBudget, weight_limit_budget
from fairprice.crawler.exchange import DepthEvent, Exchange
from fairprice.crawler.metrics import CrawlerMetrics
from fairprice.crawler.progress import SyncProgress
from fairprice.crawler.recording import Recorder
from fairprice.crawler.rest import SnapshotClient
from fairprice.crawler.settings import CrawlerSection, CrawlerSettings
from fairprice.crawler.snapshots import SnapshotFetcher
from fairprice.crawler.streams import StreamPool
from fairprice.crawler.sync import SyncEngine
from fairprice.crawler.window import WindowPolicy

__all__ = ["run"]

log = get_logger(__name__)


class _Books:
    """Turns events into published books: the stream pool's handler.

    Books are handed to NATS in the order the engine made them: a snapshot's unlocked books
    (published by a snapshot worker) and the next live event's book (by a stream reader) must
    not overtake each other while a publish waits for room, so every publish takes one FIFO
    lock, acquired in the same step as the engine call that made the book.
    """

    def __init__(self, engine: SyncEngine, publisher: Publisher, metrics: CrawlerMetrics) -> None:
        self._engine = engine
        self._publisher = publisher
        self._metrics = metrics
        self._subjects: dict[str, str] = {}
        self._order = asyncio.Lock()

    async def on_event(self, event: DepthEvent, receive_ms: int) -> None:
        book = self._engine.on_event(event, receive_ms)
        if book is not None:
            async with self._order:
                await self._publish(book)

    async def publish_all(self, books: list[Book]) -> None:
        async with self._order:
            for book in books:
                await self._publish(book)

    async def _publish(self, book: Book) -> None:
        subject = self._subjects.get(book.symbol)
        if subject is None:
            subject = self._subjects[book.symbol] = books_subject(book.exchange, book.symbol)
        await self._publisher.publish(
            subject, encode(book), book_msg_id(book.exchange, book.symbol, book.update_id)
        )
        now_ms = time.time() * 1000
        self._metrics.publish_latency.observe(max(0.0, now_ms - book.receive_time_ms) / 1000)
        self._metrics.event_to_publish.observe(max(0.0, now_ms - book.event_time_ms) / 1000)


async def run(
    settings: CrawlerSettings,
    *,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    registry: CollectorRegistry | None = None,
) -> None:
    """Run the crawler until ``stop`` is set (SIGTERM/SIGINT when not given)."""
    stop = stop or install_signal_handlers()
    registry = registry or CollectorRegistry()
    # httpx logs every request at INFO: one line per snapshot is noise with 1,000 symbols.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    cfg = settings.crawler
    exchange = exchange_for(cfg.exchange)
    readiness = Readiness("nats", "synced")
    budget = WeightBudget(
        weight_limit_budget(exchange.max_weight_per_minute, cfg.weight_reserve, cfg.weight_budget)
    )
    window = WindowPolicy.for_depth(
        cfg.depth,
        exchange.snapshot_limits,
        margin=cfg.window_margin,
        first_limit=cfg.snapshot_limit,
        max_limit=cfg.max_snapshot_limit,
    )
    progress = SyncProgress()

    async with contextlib.AsyncExitStack() as stack:
        recorder = stack.enter_context(Recorder(cfg.record)) if cfg.record else None
        engine = SyncEngine(
            exchange,
            depth=cfg.depth,
            every_event=cfg.publish_every_event,
            buffer_limit=cfg.buffer_limit,
            window=window,
            window_check=cfg.window_check,
        )
        metrics = CrawlerMetrics(registry)
        await stack.enter_async_context(HealthServer(cfg.http, registry, readiness))
        bus = await stack.enter_async_context(
            connect_bus(settings.nats, name="fairprice-crawler", readiness=readiness, stop=stop)
        )
        await ensure_streams(bus.jsm, settings.nats.streams, (Stream.BOOKS,))
        publisher = await stack.enter_async_context(
            Publisher(bus.nc, max_in_flight=cfg.publish_max_in_flight)
        )
        books = _Books(engine, publisher, metrics)
        pool = StreamPool(
            exchange,
            cfg.ws_url,
            books.on_event,
            streams_per_connection=cfg.streams_per_connection,
            streams_per_message=cfg.streams_per_message,
            messages_per_second=cfg.messages_per_second,
            reconnect_base_s=cfg.reconnect_base_s,
            reconnect_max_s=cfg.reconnect_max_s,
            max_age_s=cfg.connection_max_age_s,
            recorder=recorder,
        )
        metrics.collect_from(engine, pool, budget, progress)
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=cfg.rest_url, timeout=cfg.snapshot_timeout_s)
        )
        client = SnapshotClient(exchange, http, budget, limit=window.first_limit, recorder=recorder)
        await _learn_weight_limit(client, cfg)
        membership = await stack.enter_async_context(
            Membership(
                bus,
                "crawler",
                heartbeat_s=cfg.heartbeat_s,
                ttl_s=cfg.member_ttl_s,
                ready=lambda: [s for s, sync in engine.symbols.items() if sync.synced],
            )
        )
        await open_bucket(bus.js, Bucket.FEEDS)  # read by snapshots: created when missing
        fetcher = await stack.enter_async_context(
            SnapshotFetcher(
                engine,
                client,
                books.publish_all,
                concurrency=cfg.snapshot_concurrency,
                retry_base_s=cfg.snapshot_retry_base_s,
                retry_max_s=cfg.snapshot_retry_max_s,
                on_outcome=lambda outcome: metrics.snapshot_requests.labels(outcome).inc(),
            )
        )
        engine.request_snapshot = fetcher.request
        await stack.enter_async_context(pool)
        owner = _SymbolOwner(cfg, exchange, engine, pool, membership, bus)
        await owner.read_feeds()
        owner.apply()
        log.info(
            "crawler started",
            exchange=exchange.name,
            member=membership.member_id,
            redundancy=cfg.redundancy,
            snapshot_limit=window.first_limit,
            weight_budget=budget.budget,
            rest_url=cfg.rest_url,
            ws_url=cfg.ws_url,
        )
        # The root tasks: when one fails, the group stops the others.
        async with asyncio.TaskGroup() as tg:
            # Crawl what this replica owns: membership and feeds -> the engine's symbols.
            tg.create_task(owner.run(stop), name="crawler-ownership")
            # Keep the WebSocket connections to the exchange, their streams and reconnects.
            tg.create_task(pool.watch(stop), name="crawler-streams")
            if cfg.refresh_s > 0:
                # Check synced books against fresh snapshots in the background.
                tg.create_task(_refresh_books(engine, cfg.refresh_s, stop), name="crawler-refresh")
            # Readiness (every symbol synced), and snapshots for symbols that stay quiet.
            tg.create_task(
                _watch_progress(
                    engine, fetcher, progress, readiness, ready, stop, cfg.quiet_snapshot_s
                ),
                name="crawler-progress",
            )
            await stop.wait()
            readiness.set("synced", False)
        if cfg.handoff_s > 0 and engine.symbols and len(membership.members) > 1:
            # Leave first: the other replicas take our symbols over and sync them while we
            # keep publishing, so a rolling update loses no update even with redundancy 1.
            await membership.leave()
            log.info("handing off", symbols=len(engine.symbols), at_most_s=cfg.handoff_s)
            await _hand_over(membership, engine, cfg)
        log.info("crawler stopping")


async def _hand_over(membership: Membership, engine: SyncEngine, cfg: CrawlerSection) -> None:
    """Keep crawling (the tasks above still run) until the replicas that took our symbols
    over have them synced, or ``handoff_s`` has passed."""
    deadline = time.monotonic() + cfg.handoff_s
    waiting = set(engine.symbols)
    while time.monotonic() < deadline:
        try:
            await membership.refresh()
        except BrokerError as exc:
            log.warning("cannot read who took over; keeping on", error=str(exc))
        else:
            waiting = {s for s in waiting if not membership.taken_over(s, cfg.redundancy)}
            if not waiting:
                log.info("handed over", symbols=len(engine.symbols))
                return
        await asyncio.sleep(min(cfg.heartbeat_s, max(0.0, deadline - time.monotonic())))
    log.warning("handoff time over", not_taken_over=len(waiting), waited_s=cfg.handoff_s)


class _SymbolOwner:
    """Keeps the engine's and the pool's symbols equal to the owned part of the wanted set."""

    def __init__(
        self,
        cfg: CrawlerSection,
        exchange: Exchange,
        engine: SyncEngine,
        pool: StreamPool,
        membership: Membership,
        bus: Bus,
    ) -> None:
        self._cfg = cfg
        self._exchange = exchange
        self._engine = engine
        self._pool = pool
        self._membership = membership
        self._bus = bus
        self._feed_symbols: set[str] = set()
        self._owned: set[str] = set()
        self._releasing: dict[str, float] = {}

    async def read_feeds(self) -> None:
        try:
            self._feed_symbols = {
                symbol.upper()
                for feed in (await read_feeds(self._bus)).values()
                if feed.enabled and feed.exchange == self._exchange.name
                for symbol in feed.symbols
            }
        except BrokerError as exc:
            log.warning("cannot read feeds; keeping the last set", error=str(exc))

    def apply(self) -> None:
        """Crawl the owned symbols, plus those handed to another replica that its new owners
        do not have synced yet, for at most ``handoff_s`` (no update lost)."""
        cfg, exchange = self._cfg, self._exchange
        now = time.monotonic()
        wanted = set(cfg.symbols) | self._feed_symbols
        owned = {s for s in wanted if self._membership.owns(s, cfg.redundancy)}
        for symbol in self._owned - owned:
            if symbol in wanted and cfg.handoff_s > 0:
                self._releasing[symbol] = now + cfg.handoff_s
        membership, redundancy = self._membership, cfg.redundancy
        self._releasing = {
            s: until
            for s, until in self._releasing.items()
            if until > now and s not in owned and not membership.taken_over(s, redundancy)
        }
        self._owned = owned
        crawled = owned | self._releasing.keys()
        added, removed = self._engine.update(crawled)
        if added or removed:
            self._pool.set_streams({exchange.depth_stream(s) for s in crawled})
            log.info(
                "symbols changed",
                owned=len(owned),
                handing_off=len(self._releasing),
                wanted=len(wanted),
                added=sorted(added)[:20],
                removed=sorted(removed)[:20],
                members=len(self._membership.members),
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Re-apply on every membership change, every ``feeds_refresh_s``, and when a
        handoff ends."""
        next_read = time.monotonic() + self._cfg.feeds_refresh_s
        stopped = asyncio.create_task(stop.wait(), name="symbols-stop")
        try:
            while not stop.is_set():
                # While handing over: look again at every heartbeat (is it taken over yet?).
                handing = [time.monotonic() + self._cfg.heartbeat_s] if self._releasing else []
                wake = min([next_read, *self._releasing.values(), *handing])
                changed = asyncio.create_task(self._membership.changed(), name="symbols-members")
                try:
                    await asyncio.wait(
                        [changed, stopped],
                        timeout=max(0.0, wake - time.monotonic()),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    changed.cancel()
                if time.monotonic() >= next_read:
                    await self.read_feeds()
                    next_read = time.monotonic() + self._cfg.feeds_refresh_s
                self.apply()
        finally:
            stopped.cancel()


async def _refresh_books(engine: SyncEngine, refresh_s: float, stop: asyncio.Event) -> None:
    """Refresh each book once per ``refresh_s``, one symbol at a time, evenly spaced."""
    while True:
        symbols = sorted(engine.symbols)
        if not symbols and await wait_or_stop(stop, 1.0):
            return
        for symbol in symbols:
            if await wait_or_stop(stop, refresh_s / len(symbols)):
                return
            engine.refresh(symbol)


async def _learn_weight_limit(client: SnapshotClient, cfg: CrawlerSection) -> None:
    """Set the budget from the exchange's own request-weight limit, less the reserve; keep the
    adapter's known limit when the exchange cannot be asked now."""
    budget = client.budget
    try:
        # About one symbol we crawl (which the exchange must list): a small answer.
        limit = await client.weight_limit(cfg.symbols[0] if cfg.symbols else None)
    except (RateLimitedError, TransientError) as exc:
        log.warning("cannot read the exchange's weight limit", error=str(exc), budget=budget.budget)
        return
    if limit is None:
        log.warning("the exchange states no weight limit", budget=budget.budget)
        return
    budget.budget = weight_limit_budget(limit, cfg.weight_reserve, cfg.weight_budget)
    log.info("weight budget", exchange_limit=limit, budget=budget.budget)


async def _watch_progress(
    engine: SyncEngine,
    fetcher: SnapshotFetcher,
    progress: SyncProgress,
    readiness: Readiness,
    ready: asyncio.Event | None,
    stop: asyncio.Event,
    quiet_snapshot_s: float,
) -> None:
    """Readiness (every owned symbol synced), quiet symbols started, "synced N of M" lines
    with the estimated time left, at most one a second and only when the count changed."""
    last: tuple[int, int] | None = None
    while True:
        engine.start_quiet(quiet_snapshot_s)
        synced, total = engine.synced_count, len(engine.symbols)
        progress.sample(synced, total)
        all_synced = synced == total
        readiness.set("synced", all_synced)
        if (synced, total) != last:
            eta = progress.eta_s
            log.info(
                f"synced {synced} of {total}",
                synced=synced,
                total=total,
                eta_s=None if eta is None else round(eta, 1),
                snapshots_waiting=fetcher.waiting,
            )
            last = (synced, total)
        if readiness.ready and ready is not None and not ready.is_set():
            ready.set()
        if await wait_or_stop(stop, 1.0):
            return
