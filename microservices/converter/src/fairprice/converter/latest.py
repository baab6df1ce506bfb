"""``LatestWriter``: the KV bucket ``latest``, one entry per symbol, written on a period.

Every output marks its symbol changed; ``write`` puts the newest price and signal of each
changed symbol at once, so a symbol is written at most once per ``latest_interval_s`` however
many books it gets.

A put is a JetStream publish to the bucket's subject (``$KV.latest.<exchange>.<SYMBOL>``), sent
through the converter's pipelined ``Publisher`` like every other output: nats-py's ``kv.put``
waits a request round trip with a future and a timer each, and a second's worth of puts for
500 symbols at once held up the books behind them (the pipeline's p95 latency of prices was
twice that of books; ``bench/end_to_end.py``). An unacked put is resent until the bucket takes
it, under an id of the price it carries, so a resend is stored once.
"""

from __future__ import annotations

from collections.abc import Mapping

from fairprice.common.kv import Bucket, latest_key
from fairprice.common.messages import Latest, encode
from fairprice.common.publisher import Publisher
from fairprice.converter.symbol_state import SymbolState

__all__ = ["LatestWriter"]


class LatestWriter:
    def __init__(self) -> None:
        self._changed: set[str] = set()  # books subjects whose latest value is not in KV yet

    def mark(self, subject: str) -> None:
        self._changed.add(subject)

    def forget(self, subject: str) -> None:
        self._changed.discard(subject)

    async def write(self, publisher: Publisher, symbols: Mapping[str, SymbolState]) -> int:
        """Put the latest value of every symbol that changed since the last call; how many
        were sent."""
        changed, self._changed = self._changed, set()
        sent = 0
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
            key = latest_key(price.exchange, price.symbol)
            await publisher.publish(
                f"$KV.{Bucket.LATEST.value}.{key}",
                encode(latest),
                f"latest:{key}:{price.update_id}",
            )
            sent += 1
        return sent
