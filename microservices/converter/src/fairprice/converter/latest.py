"""``LatestWriter``: the KV bucket ``latest``, one entry per symbol, written on a period.

Every output marks its symbol changed; ``write`` puts the newest price and signal of each
changed symbol at once, so a symbol is written at most once per ``latest_interval_s`` however
many books it gets. A put that fails is logged and not retried: the next output of the symbol
writes it again, and ``latest`` is a board, not a record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from nats.js.kv import KeyValue

from fairprice.common.kv import latest_key
from fairprice.common.logs import get_logger
from fairprice.common.messages import Latest, encode
from fairprice.converter.symbol_state import SymbolState

__all__ = ["LatestWriter"]

log = get_logger(__name__)


class LatestWriter:
    def __init__(self) -> None:
        self._changed: set[str] = set()  # books subjects whose latest value is not in KV yet

    def mark(self, subject: str) -> None:
        self._changed.add(subject)

    def forget(self, subject: str) -> None:
        self._changed.discard(subject)

    async def write(self, kv: KeyValue, symbols: Mapping[str, SymbolState]) -> int:
        """Put the latest value of every symbol that changed since the last call; how many
        were written."""
        changed, self._changed = self._changed, set()
        puts = []
        for subject in changed:
            state = symbols.get(subject)
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
                alerts=sorted(n for n, on in state.pipeline.alerts.firing.items() if on),
            )
            puts.append(kv.put(latest_key(price.exchange, price.symbol), encode(latest)))
        results = await asyncio.gather(*puts, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            log.warning("latest not written", count=len(failed), error=repr(failed[0]))
        return len(puts) - len(failed)
