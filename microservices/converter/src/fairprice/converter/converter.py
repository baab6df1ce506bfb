"""``Converter``: the symbols one replica owns, taken over, handled live and forgotten.

Each replica reads BOOKS through a live ``TailSet``, a tail per partition it owns
(``books.<partition>.>``; stored books carry their partition, see
``fairprice.common.subjects``), so N replicas each receive about 1/N of the stream. When the
owned partitions change, the set is refiltered before any takeover starts, so the live books
of a gained partition are buffered from then on and the takeover replays what came before. A
symbol it starts to own is rebuilt (``takeover``) while its live books wait in a buffer; every
book, replayed or live, goes through the same ``processing``; the newest value of each symbol
goes to KV ``latest`` (``latest``).
"""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg

from fairprice.common.broker_errors import broker_errors
from fairprice.common.bus import Bus
from fairprice.common.delivery import stream_seq
from fairprice.common.health import Readiness
from fairprice.common.logs import get_logger
from fairprice.common.publisher import Publisher
from fairprice.common.subjects import Stream, books_partition_filter, parse_subject
from fairprice.common.tail_set import TailSet
from fairprice.converter.latest import LatestWriter
from fairprice.converter.metrics import ConverterMetrics
from fairprice.converter.ownership import Ownership
from fairprice.converter.params import Params, params_for
from fairprice.converter.processing import BookProcessor
from fairprice.converter.settings import ConverterSection
from fairprice.converter.symbol_state import SymbolState
from fairprice.converter.takeover import Takeover

__all__ = ["Converter"]

log = get_logger(__name__)


class Converter:
    """The state of one replica; ``handle`` the live books, ``set_members`` on membership."""

    def __init__(
        self,
        settings: ConverterSection,
        partitions: int,
        bus: Bus,
        live: TailSet,
        publisher: Publisher,
        metrics: ConverterMetrics,
        readiness: Readiness,
        member_id: str,
    ) -> None:
        self._bus = bus
        self._live = live
        self._metrics = metrics
        self._readiness = readiness
        self._ownership = Ownership(member_id, partitions)
        self._publisher = publisher
        self._latest = LatestWriter()
        self._processor = BookProcessor(publisher, metrics, self._latest)
        self._takeover = Takeover(settings, bus, self._processor, metrics)
        self._default = params_for(settings)
        self._params: dict[tuple[str, str], Params] = {}
        self._symbols: dict[str, SymbolState] = {}  # by books subject
        self._rebuilds: dict[str, asyncio.Task[None]] = {}

    @property
    def owned(self) -> frozenset[int]:
        return self._ownership.owned

    # -- ownership ---------------------------------------------------------------------------

    async def set_members(self, members: tuple[str, ...]) -> None:
        """Recompute the owned partitions; drop the lost ones, take the gained ones over."""
        lost, gained = self._ownership.update(members)
        self._metrics.owned_partitions.set(len(self.owned))
        if lost or gained:
            log.info(
                "partitions changed",
                owned=len(self.owned),
                gained=sorted(gained),
                lost=sorted(lost),
            )
        # Before any takeover: the live books of a gained partition are buffered from here on.
        await self._live.refilter(_live_filters(self._ownership))
        partition = self._ownership.partition
        for subject in [s for s in self._symbols if partition(s) in lost]:
            await self._forget(subject)
        if gained:
            await self.rescan()
        self._update_readiness()

    async def rescan(self) -> None:
        """Take over every symbol of an owned partition that BOOKS holds and this replica has
        no state for (at a takeover; periodically, to retry a rebuild that failed)."""
        for subject in await self._stored_subjects():
            if self._ownership.owns(subject) and subject not in self._symbols:
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
        with broker_errors("BOOKS subjects"):
            info = await self._bus.jsm.stream_info(
                Stream.BOOKS.value, subjects_filter=Stream.BOOKS.wildcard
            )
        return sorted(info.state.subjects or {})

    # -- symbols taken over and forgotten ----------------------------------------------------

    async def _forget(self, subject: str) -> None:
        task = self._rebuilds.pop(subject, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._symbols.pop(subject, None)
        self._latest.forget(subject)
        self._metrics.owned_symbols.set(len(self._symbols))
        self._metrics.rebuilding.set(len(self._rebuilds))

    def _take_over(self, subject: str) -> SymbolState:
        _, exchange, symbol = parse_subject(subject)
        state = SymbolState(subject, exchange, symbol)
        self._symbols[subject] = state
        params = self._params.get((exchange, symbol), self._default)
        task = asyncio.create_task(self._takeover.rebuild(state, params), name=f"rebuild-{subject}")
        self._rebuilds[subject] = task
        task.add_done_callback(lambda done: self._rebuilt(subject, state, done))
        self._metrics.owned_symbols.set(len(self._symbols))
        self._metrics.rebuilding.set(len(self._rebuilds))
        self._update_readiness()
        return state

    def _rebuilt(self, subject: str, state: SymbolState, task: asyncio.Task[None]) -> None:
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
        self._readiness.set("rebuilt", self._ownership.placed and not self._rebuilds)

    async def close(self) -> None:
        """Stop the rebuilds under way (what they published is kept; the next owner resumes)."""
        for subject in list(self._rebuilds):
            await self._forget(subject)

    # -- live books --------------------------------------------------------------------------

    async def handle(self, msgs: list[Msg]) -> None:
        """Process live books: those of owned partitions (a refiltered tail may still hand out
        a few of a partition just lost), in stream order."""
        self._metrics.received.inc(len(msgs))
        owns = self._ownership.owns
        apply = self._processor.apply
        for msg in msgs:
            subject = msg.subject
            if not owns(subject):
                continue
            state = self._symbols.get(subject)
            if state is None:  # a symbol new to this replica
                state = self._take_over(subject)
            seq = stream_seq(msg)
            if state.pipeline is None:
                state.buffer.append((seq, msg.data))
            elif seq > state.last_seq:
                state.last_seq = seq
                await apply(state, state.pipeline, msg.data)

    async def write_latest(self) -> int:
        """Put the latest value of every symbol that changed since the last call."""
        return await self._latest.write(self._publisher, self._symbols)


def _live_filters(ownership: Ownership) -> list[str]:
    """The live tails' filters: one per owned partition (a consumer each: nats-server serves a
    consumer of several filters that is behind at ~4x the CPU a message, ``bench/filters.py``),
    or the whole stream's one when every partition is owned (one consumer, not sixteen)."""
    if ownership.owns_all:
        return [Stream.BOOKS.wildcard]
    return [books_partition_filter(p) for p in sorted(ownership.owned)]
