"""``Takeover``: rebuilding a symbol's state when this replica starts to own it.

**Where a symbol resumes.** No replica keeps a position anywhere: the position of a symbol is
its newest price in PRICES, which JetStream returns by subject. Taking a symbol over (at start,
after a kill -9 of the previous owner, on a scale up or down) means:

1. start buffering the symbol's live books (the live tail was created before, so it delivers
   everything stored from now on; the converter does this before calling ``rebuild``);
2. read the newest price (and signal) of the symbol; it carries the crossover trend; and
   what CANDLES holds for the longer candles and the indicators (``read_candle_history``);
3. replay the symbol's BOOKS from (that price's event time - slow window (or the longest alert
   window, ``Params.history_s``), or the start of its
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
from typing import TypeVar

from fairprice.common.broker_errors import broker_errors
from fairprice.common.bus import Bus
from fairprice.common.delivery import stream_seq
from fairprice.common.errors import InvalidMessageError, NotFoundError
from fairprice.common.logs import get_logger
from fairprice.common.messages import FairPrice, Signal, decode
from fairprice.common.subjects import Stream, prices_subject, signals_subject
from fairprice.common.tail import StreamTail
from fairprice.converter.candle_history import read_candle_history
from fairprice.converter.metrics import ConverterMetrics
from fairprice.converter.params import Params
from fairprice.converter.processing import BookProcessor
from fairprice.converter.settings import ConverterSection
from fairprice.converter.symbol_pipeline import SymbolPipeline
from fairprice.converter.symbol_state import SymbolState

__all__ = ["Takeover"]

log = get_logger(__name__)

_MINUTE_MS = 60_000
_Out = TypeVar("_Out", FairPrice, Signal)


class Takeover:
    """``await takeover.rebuild(state, params)``: at most ``rebuild_concurrency`` at once."""

    def __init__(
        self,
        settings: ConverterSection,
        bus: Bus,
        processor: BookProcessor,
        metrics: ConverterMetrics,
    ) -> None:
        self._settings = settings
        self._bus = bus
        self._processor = processor
        self._metrics = metrics
        self._slots = asyncio.Semaphore(settings.rebuild_concurrency)

    async def rebuild(self, state: SymbolState, params: Params) -> None:
        """Steps 2 to 4 above; ``state.pipeline`` is set when the symbol is live."""
        async with self._slots:
            started = time.monotonic()
            exchange, symbol = state.exchange, state.symbol
            pipeline = SymbolPipeline(exchange, symbol, params)
            last = await self._last(Stream.PRICES, prices_subject(exchange, symbol), FairPrice)
            signal = await self._last(Stream.SIGNALS, signals_subject(exchange, symbol), Signal)
            pipeline.last_signal = signal
            start_time = None
            if last is not None:
                minutes, indicator_candle = await read_candle_history(
                    self._bus,
                    params,
                    last,
                    margin_s=self._settings.replay_margin_s,
                    batch=self._settings.batch,
                )
                pipeline.resume(last, minutes, indicator_candle)
                start_ms = min(
                    last.event_time_ms - round(params.history_s * 1000),
                    last.event_time_ms - last.event_time_ms % _MINUTE_MS,
                ) - round(self._settings.replay_margin_s * 1000)
                start_time = dt.datetime.fromtimestamp(max(start_ms, 0) / 1000, dt.UTC)
            apply = self._processor.apply
            replayed = 0
            tail = StreamTail(
                self._bus,
                Stream.BOOKS,
                state.subject,
                start_time=start_time,
                max_buffer=4 * self._settings.batch,  # several replays run at once
            )
            async with tail:
                while not tail.caught_up:
                    for msg in await tail.next_batch(self._settings.batch, 1.0):
                        state.last_seq = stream_seq(msg)
                        await apply(state, pipeline, msg.data)
                        replayed += 1
            # The live books that came in meanwhile, except those the replay already had.
            while state.buffer:
                buffered, state.buffer = state.buffer, []
                for seq, data in buffered:
                    if seq > state.last_seq:
                        state.last_seq = seq
                        await apply(state, pipeline, data)
            state.pipeline = pipeline  # live from here: no await since the buffer was empty
            seconds = time.monotonic() - started
            self._metrics.rebuilds.inc()
            self._metrics.rebuild_seconds.observe(seconds)
            log.info(
                "symbol taken over",
                subject=state.subject,
                resume_after=last.update_id if last is not None else None,
                replayed=replayed,
                seconds=round(seconds, 3),
            )

    async def _last(self, stream: Stream, subject: str, kind: type[_Out]) -> _Out | None:
        """The newest message of ``subject`` in ``stream``, if any."""
        try:
            with broker_errors(f"last message of {subject}"):
                raw = await self._bus.jsm.get_last_msg(stream.value, subject)
        except NotFoundError:
            return None
        try:
            return decode(raw.data or b"", kind)
        except InvalidMessageError as exc:
            log.warning("unreadable last output, rebuilding from scratch", error=str(exc))
            return None
