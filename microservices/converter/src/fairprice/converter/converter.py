"""The converter's engine: owned partitions, live books, takeovers that rebuild state.

Each replica reads the whole BOOKS stream through one live ``StreamTail`` (nats-server 2.9
allows one filter subject per consumer, and the subjects carry no partition), and looks at a
book only when its subject's partition is one it owns: a dict lookup on the subject, before any
decoding.

**Where a symbol resumes.** No replica keeps a position anywhere: the position of a symbol is
its newest price in PRICES, which JetStream returns by subject. Taking a symbol over (at start,
after a kill -9 of the previous owner, on a scale up or down) means:

1. start buffering the symbol's live books (the live tail was created before, so it delivers
   everything stored from now on);
2. read the newest price (and signal) of the symbol; it carries the crossover trend;
3. replay the symbol's BOOKS from (that price's event time - slow window, or the start of its
   minute if earlier, - ``replay_margin_s``) through a per-subject tail, feeding the pipeline
   but publishing only what comes after that price (the windows and candle before it are what
   the previous owner had, exactly: they depend only on those books);
4. process the buffered live books the replay did not already cover (by stream sequence), then
   switch the symbol to live.

Nothing is missed, because the replay reaches what the buffer starts with; nothing differs,
because the pipeline is a pure function of the books. Where two replicas briefly both own a
symbol during a handover they publish the same bytes under the same message ids, and
JetStream's duplicate window keeps one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.kv import KeyValue

from fairprice.common.bus import Bus
from fairprice.common.errors import InvalidMessageError
from fairprice.common.feeds import Feed
from fairprice.common.health import Readiness
from fairprice.common.logs import get_logger
from fairprice.common.messages import Book, FairPrice, Latest, Signal, decode, encode
from fairprice.common.publisher import Publisher
from fairprice.common.subjects import Stream, parse_subject, prices_subject, signals_subject
from fairprice.common.tail import StreamTail, stream_seq
from fairprice.converter.fair_price import Skip
from fairprice.converter.metrics import ConverterMetrics
from fairprice.converter.partitions import owned_partitions, partition_of
from fairprice.converter.pipeline import Params, SymbolPipeline
from fairprice.converter.settings import ConverterSection

__all__ = ["Converter", "params_by_symbol"]

log = get_logger(__name__)

_MINUTE_MS = 60_000
_Out = TypeVar("_Out", FairPrice, Signal)


@dataclass(eq=False)
class _Symbol:
    subject: str
    exchange: str
    symbol: str
    pipeline: SymbolPipeline | None = None
    """``None`` while the state is being rebuilt."""
    buffer: list[tuple[int, bytes]] = field(default_factory=list)
    """Live books (stream sequence, payload) that arrived during the rebuild."""
    last_seq: int = 0
    """The stream sequence of the last book handled."""


def params_by_symbol(
    feeds: Iterable[Feed], settings: ConverterSection
) -> dict[tuple[str, str], Params]:
    """Each feed's per-symbol parameters; what the feeds leave out comes from ``settings``."""
    result: dict[tuple[str, str], Params] = {}
    for feed in feeds:
        if not feed.enabled:
            continue
        params = Params(
            method=feed.method,
            notional=feed.notional,
            depth=settings.impact_depth,
            sma_fast_s=feed.sma_fast_s,
            sma_slow_s=feed.sma_slow_s,
            min_gap=settings.min_gap,
        )
        for symbol in feed.symbols:
            result[(feed.exchange, symbol.upper())] = params
    return result


class Converter:
    """The state of one replica; ``handle`` the live books, ``set_members`` on membership."""

    def __init__(
        self,
        settings: ConverterSection,
        bus: Bus,
        publisher: Publisher,
        metrics: ConverterMetrics,
        readiness: Readiness,
        member_id: str,
    ) -> None:
        self._settings = settings
        self._bus = bus
        self._publisher = publisher
        self._metrics = metrics
        self._readiness = readiness
        self._member_id = member_id
        self._default = Params(
            method=settings.method,
            notional=settings.notional,
            depth=settings.impact_depth,
            sma_fast_s=settings.sma_fast_s,
            sma_slow_s=settings.sma_slow_s,
            min_gap=settings.min_gap,
        )
        self._params: dict[tuple[str, str], Params] = {}
        self._symbols: dict[str, _Symbol] = {}  # by books subject
        self._partitions: dict[str, int] = {}  # books subject -> partition (a cache)
        self.owned: frozenset[int] = frozenset()
        self._placed = False  # ownership computed at least once
        self._rebuilds: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(settings.rebuild_concurrency)
        self._dirty: set[str] = set()  # symbols whose latest value is not in KV yet
        self._skips = {reason: metrics.skipped.labels(reason.value) for reason in Skip}
        self._signals = {action: metrics.signals.labels(action) for action in ("BUY", "SELL")}

    # -- ownership ---------------------------------------------------------------------------

    def _partition(self, subject: str) -> int:
        partition = self._partitions.get(subject)
        if partition is None:
            _, exchange, symbol = parse_subject(subject)
            partition = partition_of(exchange, symbol, self._settings.partitions)
            self._partitions[subject] = partition
        return partition

    async def set_members(self, members: tuple[str, ...]) -> None:
        """Recompute the owned partitions; drop the lost ones, take the gained ones over."""
        owned = owned_partitions(self._member_id, members, self._settings.partitions)
        lost, gained = self.owned - owned, owned - self.owned
        self.owned = owned
        self._placed = True
        self._metrics.owned_partitions.set(len(owned))
        if lost or gained:
            log.info(
                "partitions changed", owned=len(owned), gained=sorted(gained), lost=sorted(lost)
            )
        for subject in [s for s in self._symbols if self._partition(s) in lost]:
            await self._forget(subject)
        if gained:
            await self.rescan()
        self._update_readiness()

    async def rescan(self) -> None:
        """Take over every symbol of an owned partition that BOOKS holds and this replica has
        no state for (at a takeover; periodically, to retry a rebuild that failed)."""
        for subject in await self._stored_subjects():
            if self._partition(subject) in self.owned and subject not in self._symbols:
                self._take_over(subject)

    async def set_params(self, params: dict[tuple[str, str], Params]) -> None:
        """New per-symbol parameters (from feeds): a symbol whose parameters changed is
        rebuilt with them."""
        old, self._params = self._params, params
        for subject, state in list(self._symbols.items()):
            key = (state.exchange, state.symbol)
            if old.get(key, self._default) != params.get(key, self._default):
                log.info("parameters changed", exchange=state.exchange, symbol=state.symbol)
                await self._forget(subject)
                self._take_over(subject)
        self._update_readiness()

    async def _stored_subjects(self) -> list[str]:
        info = await self._bus.jsm.stream_info(
            Stream.BOOKS.value, subjects_filter=Stream.BOOKS.wildcard
        )
        return sorted(info.state.subjects or {})

    async def _forget(self, subject: str) -> None:
        task = self._rebuilds.pop(subject, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._symbols.pop(subject, None)
        self._dirty.discard(subject)
        self._metrics.owned_symbols.set(len(self._symbols))
        self._metrics.rebuilding.set(len(self._rebuilds))

    def _take_over(self, subject: str) -> _Symbol:
        _, exchange, symbol = parse_subject(subject)
        state = _Symbol(subject, exchange, symbol)
        self._symbols[subject] = state
        task = asyncio.create_task(self._rebuild(subject, state), name=f"rebuild-{subject}")
        self._rebuilds[subject] = task
        task.add_done_callback(lambda done: self._rebuilt(subject, state, done))
        self._metrics.owned_symbols.set(len(self._symbols))
        self._metrics.rebuilding.set(len(self._rebuilds))
        self._update_readiness()
        return state

    def _rebuilt(self, subject: str, state: _Symbol, task: asyncio.Task[None]) -> None:
        if self._rebuilds.get(subject) is task:
            del self._rebuilds[subject]
        self._metrics.rebuilding.set(len(self._rebuilds))
        if not task.cancelled() and (exc := task.exception()) is not None:
            # A broker hiccup mid-rebuild: forget the symbol; its next book (or the periodic
            # rescan) takes it over again from what is in PRICES.
            log.warning("rebuild failed", subject=subject, error=repr(exc))
            if self._symbols.get(subject) is state:
                del self._symbols[subject]
                self._metrics.owned_symbols.set(len(self._symbols))
        self._update_readiness()

    def _update_readiness(self) -> None:
        self._readiness.set("rebuilt", self._placed and not self._rebuilds)

    async def close(self) -> None:
        """Stop the rebuilds under way (what they published is kept; the next owner resumes)."""
        for subject in list(self._rebuilds):
            await self._forget(subject)

    # -- rebuild -----------------------------------------------------------------------------

    async def _last(self, stream: Stream, subject: str, kind: type[_Out]) -> _Out | None:
        """The newest message of ``subject`` in ``stream``, if any."""
        try:
            raw = await self._bus.jsm.get_last_msg(stream.value, subject)
        except nats.js.errors.NotFoundError:
            return None
        try:
            return decode(raw.data or b"", kind)
        except InvalidMessageError as exc:
            log.warning("unreadable last output, rebuilding from scratch", error=str(exc))
            return None

    async def _rebuild(self, subject: str, state: _Symbol) -> None:
        async with self._slots:
            started = time.monotonic()
            exchange, symbol = state.exchange, state.symbol
            params = self._params.get((exchange, symbol), self._default)
            pipeline = SymbolPipeline(exchange, symbol, params)
            last = await self._last(Stream.PRICES, prices_subject(exchange, symbol), FairPrice)
            signal = await self._last(Stream.SIGNALS, signals_subject(exchange, symbol), Signal)
            pipeline.last_signal = signal
            start_time = None
            if last is not None:
                pipeline.resume(last)
                start_ms = min(
                    last.event_time_ms - round(params.sma_slow_s * 1000),
                    last.event_time_ms - last.event_time_ms % _MINUTE_MS,
                ) - round(self._settings.replay_margin_s * 1000)
                start_time = dt.datetime.fromtimestamp(max(start_ms, 0) / 1000, dt.UTC)
            replayed = 0
            tail = StreamTail(
                self._bus,
                Stream.BOOKS,
                subject,
                start_time=start_time,
                max_buffer=4 * self._settings.batch,  # several replays run at once
            )
            async with tail:
                while not tail.caught_up:
                    for msg in await tail.next_batch(self._settings.batch, 1.0):
                        state.last_seq = stream_seq(msg)
                        await self._apply(state, pipeline, msg.data)
                        replayed += 1
            # The live books that came in meanwhile, except those the replay already had.
            while state.buffer:
                buffered, state.buffer = state.buffer, []
                for seq, data in buffered:
                    if seq > state.last_seq:
                        state.last_seq = seq
                        await self._apply(state, pipeline, data)
            state.pipeline = pipeline  # live from here: no await since the buffer was empty
            seconds = time.monotonic() - started
            self._metrics.rebuilds.inc()
            self._metrics.rebuild_seconds.observe(seconds)
            log.info(
                "symbol taken over",
                subject=subject,
                resume_after=last.update_id if last is not None else None,
                replayed=replayed,
                seconds=round(seconds, 3),
            )

    # -- books -------------------------------------------------------------------------------

    async def handle(self, msgs: list[Msg]) -> None:
        """Process live books: those of owned partitions, in stream order."""
        for msg in msgs:
            subject = msg.subject
            partition = self._partitions.get(subject)
            if partition is None:
                partition = self._partition(subject)
            if partition not in self.owned:  # read each time: ownership changes between awaits
                continue
            state = self._symbols.get(subject)
            if state is None:  # a symbol new to this replica
                state = self._take_over(subject)
            seq = stream_seq(msg)
            if state.pipeline is None:
                state.buffer.append((seq, msg.data))
            elif seq > state.last_seq:
                state.last_seq = seq
                await self._apply(state, state.pipeline, msg.data)

    async def _apply(self, state: _Symbol, pipeline: SymbolPipeline, data: bytes) -> None:
        try:
            book = decode(data, Book)
        except InvalidMessageError as exc:
            self._metrics.invalid.inc()
            log.warning(
                "invalid book dropped", exchange=state.exchange, symbol=state.symbol, error=str(exc)
            )
            return
        self._metrics.books.inc()
        result = pipeline.process(book)
        if isinstance(result, Skip):
            self._skips[result].inc()
            return
        if not result:
            return
        publish = self._publisher.publish
        for stream, subject, payload, msg_id in result:
            await publish(subject, payload, msg_id)
            if stream is Stream.SIGNALS and pipeline.last_signal is not None:
                self._signals[pipeline.last_signal.action].inc()
            elif stream is Stream.CANDLES:
                self._metrics.candles.inc()
        self._metrics.prices.inc()
        self._dirty.add(state.subject)

    # -- latest ------------------------------------------------------------------------------

    async def write_latest(self, kv: KeyValue) -> int:
        """Put the latest value of every symbol that changed since the last call."""
        dirty, self._dirty = self._dirty, set()
        puts = []
        for key in dirty:
            state = self._symbols.get(key)
            if state is None or state.pipeline is None or state.pipeline.last_price is None:
                continue
            price, signal = state.pipeline.last_price, state.pipeline.last_signal
            latest = Latest(
                exchange=price.exchange,
                symbol=price.symbol,
                update_id=price.update_id,
                event_time_ms=price.event_time_ms,
                method=price.method,
                price=price.price,
                sma_fast=price.sma_fast,
                sma_slow=price.sma_slow,
                signal=signal.action if signal is not None else None,
                signal_time_ms=signal.event_time_ms if signal is not None else None,
                mid=price.mid,
                spread=price.spread,
            )
            puts.append(kv.put(f"{price.exchange}.{price.symbol}", encode(latest)))
        results = await asyncio.gather(*puts, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            log.warning("latest not written", count=len(failed), error=repr(failed[0]))
        return len(puts) - len(failed)
