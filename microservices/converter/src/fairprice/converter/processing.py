"""``BookProcessor``: one book through a symbol's pipeline, its outputs published and counted.

The same for a live book and a replayed one: the pipeline decides what a book emits (nothing
for a book the previous owner already published), the processor publishes it under its message
id and marks the symbol's ``latest`` value changed.
"""

from __future__ import annotations

from fairprice.common.errors import InvalidMessageError
from fairprice.common.logs import get_logger
from fairprice.common.messages import Book, decode
from fairprice.common.publisher import Publisher
from fairprice.common.subjects import Stream
from fairprice.converter.fair_price import Skip
from fairprice.converter.latest import LatestWriter
from fairprice.converter.metrics import ConverterMetrics
from fairprice.converter.symbol_pipeline import SymbolPipeline
from fairprice.converter.symbol_state import SymbolState

__all__ = ["BookProcessor"]

log = get_logger(__name__)


class BookProcessor:
    def __init__(
        self, publisher: Publisher, metrics: ConverterMetrics, latest: LatestWriter
    ) -> None:
        self._publisher = publisher
        self._metrics = metrics
        self._latest = latest
        self._skips = {reason: metrics.skipped.labels(reason.value) for reason in Skip}
        self._signals = {action: metrics.signals.labels(action) for action in ("BUY", "SELL")}

    async def apply(self, state: SymbolState, pipeline: SymbolPipeline, data: bytes) -> None:
        """Process the book ``data`` of ``state``'s symbol; an invalid one is counted and
        dropped."""
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
            if stream is Stream.SIGNALS:  # a book may give several: the id ends in the action
                self._signals[msg_id.rsplit(":", 1)[1]].inc()
            elif stream is Stream.CANDLES:
                self._metrics.candles.inc()
            elif stream is Stream.ALERTS:
                self._metrics.alerts.inc()
                # Once per event: a replay publishes only what comes after the last price.
                log.info("market alert", subject=subject, id=msg_id)
        self._metrics.prices.inc()
        self._latest.mark(state.subject)
