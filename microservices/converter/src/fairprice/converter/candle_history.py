"""``read_candle_history``: what a takeover reads back from CANDLES to resume a symbol's
candles and indicators (see ``SymbolCandles.resume``).

- The newest candle of the indicator interval (by subject: ``get_last_msg``); it carries the
  indicators' state.
- The 1-minute candles of the longest configured interval's current period, read through a
  per-subject tail from that period's start (by the stream's own timestamps, less
  ``margin_s`` for the exchange's clock being ahead of the broker's); at most 1,440 of them
  for a day.

CANDLES keeps 7 days by default (``[nats.streams.candles]``): it must keep at least the longest
interval, or a takeover late in a period resumes that period's candle from what is left.
"""

from __future__ import annotations

import datetime as dt

from fairprice.common.broker_errors import broker_errors
from fairprice.common.bus import Bus
from fairprice.common.errors import InvalidMessageError, NotFoundError
from fairprice.common.intervals import BASE_INTERVAL, INTERVAL_MS
from fairprice.common.logs import get_logger
from fairprice.common.messages import Candle, FairPrice, decode
from fairprice.common.subjects import Stream, candles_subject
from fairprice.common.tail import StreamTail
from fairprice.converter.params import Params

__all__ = ["read_candle_history"]

log = get_logger(__name__)


async def read_candle_history(
    bus: Bus, params: Params, last: FairPrice, *, margin_s: float, batch: int
) -> tuple[list[Candle], Candle | None]:
    """``(1-minute candles of the longest period before the last price's minute, the newest
    candle of the indicator interval)`` of ``last``'s symbol."""
    exchange, symbol = last.exchange, last.symbol
    indicator_candle = None
    subject = candles_subject(exchange, symbol, params.indicators.interval)
    try:
        with broker_errors("last indicator candle"):
            raw = await bus.jsm.get_last_msg(Stream.CANDLES.value, subject)
        indicator_candle = decode(raw.data or b"", Candle)
    except NotFoundError:
        pass
    except InvalidMessageError as exc:
        log.warning("unreadable last candle, indicators start over", error=str(exc))
    now = last.event_time_ms
    longest = max(INTERVAL_MS[interval] for interval in params.intervals)
    period = now - now % longest
    minute = now - now % INTERVAL_MS[BASE_INTERVAL]
    minutes: list[Candle] = []
    if period == minute:
        return minutes, indicator_candle
    start_ms = max(period - round(margin_s * 1000), 0)
    tail = StreamTail(
        bus,
        Stream.CANDLES,
        candles_subject(exchange, symbol, BASE_INTERVAL),
        start_time=dt.datetime.fromtimestamp(start_ms / 1000, dt.UTC),
        max_buffer=batch,
    )
    async with tail:
        while not tail.caught_up:
            for msg in await tail.next_batch(batch, 1.0):
                try:
                    candle = decode(msg.data, Candle)
                except InvalidMessageError as exc:
                    log.warning("unreadable candle skipped", error=str(exc))
                    continue
                if period <= candle.start_ms < minute:
                    minutes.append(candle)
    return minutes, indicator_candle
