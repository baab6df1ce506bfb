"""One symbol's state machine: book in, fair price, signals and closed candles out.

``SymbolPipeline.process(book)`` is a pure function of the sequence of books it has been fed:
the same books give the same outputs, byte for byte, whichever replica runs it and whether it
lived through them or replayed them after a takeover (market alerts too: ``alerting``). Its
whole state is the two SMA windows
(which depend only on the books of the last ``sma_slow``), the open minute (the books of the
current minute), the last update id and event time, the crossover ``trend``, which depends
on the whole past and therefore rides on every price message so that a takeover can resume it
(see ``resume``), and the candles of longer intervals and the candle indicators, which a
takeover reads back from CANDLES (``SymbolCandles``).

Outputs for books at or before ``emit_after`` are computed but not returned: that is how a
replica that replays history to rebuild its windows stays silent about what is already in
PRICES.
"""

from __future__ import annotations

from collections.abc import Iterable

from fairprice.common.feeds import Strategy
from fairprice.common.messages import Book, Candle, FairPrice, Signal, encode
from fairprice.common.subjects import (
    Stream,
    book_msg_id,
    candle_msg_id,
    candles_subject,
    price_msg_id,
    prices_subject,
    signal_msg_id,
    signals_subject,
)
from fairprice.converter.alerting import AlertPrice, SignalGiven, SymbolAlerts
from fairprice.converter.fair_price import Skip, price_book
from fairprice.converter.indicators import Crossover, SmaWindow
from fairprice.converter.params import Params
from fairprice.converter.symbol_candles import SymbolCandles

__all__ = ["STRATEGY", "Output", "SymbolPipeline"]

STRATEGY: Strategy = "sma_cross"


Output = tuple[Stream, str, bytes, str]
"""What to publish: ``(stream, subject, payload, message id)``."""


class SymbolPipeline:
    """Fair price, indicators and candles of one ``exchange``/``symbol``."""

    def __init__(self, exchange: str, symbol: str, params: Params) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.params = params
        self.emit_after = 0
        """Books with an update id up to this one produce no output (already published)."""
        self.last_update_id = 0
        self.last_time_ms = 0
        self.fast = SmaWindow(round(params.sma_fast_s * 1000))
        self.slow = SmaWindow(round(params.sma_slow_s * 1000))
        self.crossover = Crossover(params.min_gap)
        self.candles = SymbolCandles(exchange, symbol, params)
        self._sma_signals = "sma_cross" in params.strategies
        self.last_price: FairPrice | None = None
        self.last_signal: Signal | None = None
        self.alerts = SymbolAlerts(exchange, symbol, params.alerts)
        self._resume_trend: int | None = None
        self._prices_subject = prices_subject(exchange, symbol)
        self._signals_subject = signals_subject(exchange, symbol)
        self._candles_subjects = {i: candles_subject(exchange, symbol, i) for i in params.intervals}

    def resume(
        self,
        last: FairPrice,
        minutes: Iterable[Candle] = (),
        indicator_candle: Candle | None = None,
    ) -> None:
        """Continue after ``last``, the newest price already in PRICES (with the crossover
        trend it carries): its outputs and those before it are not emitted again. ``minutes``
        and ``indicator_candle`` are what CANDLES holds (see ``SymbolCandles.resume``)."""
        self.emit_after = last.update_id
        self._resume_trend = last.trend
        self.last_price = last
        self.alerts.resume(last)
        self.candles.resume(last.event_time_ms, minutes, indicator_candle)

    def process(self, book: Book) -> list[Output] | Skip:
        """The outputs of ``book`` (empty while replaying), or why it was skipped."""
        if book.update_id <= self.last_update_id:
            return Skip.STALE
        params = self.params
        quote = price_book(
            book.bids,
            book.asks,
            method=params.method,
            notional=params.notional,
            depth=params.depth,
        )
        if isinstance(quote, Skip):
            return quote
        self.last_update_id = book.update_id
        # Event times of one symbol do not go back; if an exchange ever sent one that did,
        # time stands still for it rather than reopening a closed minute.
        time_ms = (
            book.event_time_ms if book.event_time_ms > self.last_time_ms else self.last_time_ms
        )
        self.last_time_ms = time_ms
        price = quote.price
        sma_fast = self.fast.push(time_ms, price)
        sma_slow = self.slow.push(time_ms, price)
        emit = book.update_id > self.emit_after
        action = None
        if self._resume_trend is None:
            action = self.crossover.update(sma_fast, sma_slow)
        elif book.update_id >= self.emit_after:
            # The book of the last published price (or the first after it, if that one is no
            # longer in BOOKS): from here on the trend is the published one, exactly as the
            # replica that published it had it. Before, the trend does not matter.
            self.crossover.trend = self._resume_trend
            self._resume_trend = None
            if emit:
                action = self.crossover.update(sma_fast, sma_slow)
        closed, decisions = self.candles.push(time_ms, price, emit)
        at = AlertPrice(book.update_id, book.event_time_ms, time_ms, price, self.crossover.trend)
        given: list[SignalGiven] = [(strategy, decided) for strategy, decided, _ in decisions]
        if action is not None and self._sma_signals:
            given.append((STRATEGY, action))
        alerts = self.alerts.evaluate(at, given, emit)
        if not emit:
            return []
        outputs: list[Output] = []
        exchange, symbol = self.exchange, self.symbol
        book_id = book_msg_id(exchange, symbol, book.update_id)
        for candle in closed:
            outputs.append(
                (
                    Stream.CANDLES,
                    self._candles_subjects[candle.interval],
                    encode(candle),
                    candle_msg_id(exchange, symbol, candle.interval, candle.start_ms),
                )
            )
        for strategy, decided, by in decisions:
            signal = Signal(
                exchange=exchange,
                symbol=symbol,
                update_id=book.update_id,
                event_time_ms=book.event_time_ms,
                strategy=strategy,
                action=decided,
                price=price,
                rsi=by.rsi if strategy == "rsi_reversal" else None,
                macd=by.macd if strategy == "macd_cross" else None,
                macd_signal=by.macd_signal if strategy == "macd_cross" else None,
            )
            self.last_signal = signal
            outputs.append(
                (
                    Stream.SIGNALS,
                    self._signals_subject,
                    encode(signal),
                    signal_msg_id(book_id, strategy, decided),
                )
            )
        if action is not None and self._sma_signals:
            signal = Signal(
                exchange=exchange,
                symbol=symbol,
                update_id=book.update_id,
                event_time_ms=book.event_time_ms,
                strategy=STRATEGY,
                action=action,
                price=price,
                sma_fast=sma_fast,
                sma_slow=sma_slow,
            )
            self.last_signal = signal
            outputs.append(
                (
                    Stream.SIGNALS,
                    self._signals_subject,
                    encode(signal),
                    signal_msg_id(book_id, STRATEGY, action),
                )
            )
        fair = FairPrice(
            exchange=exchange,
            symbol=symbol,
            update_id=book.update_id,
            event_time_ms=book.event_time_ms,
            method=quote.method,
            price=price,
            mid=quote.mid,
            microprice=quote.microprice,
            impact=quote.impact,
            spread=quote.spread,
            imbalance=quote.imbalance,
            sma_fast=sma_fast,
            sma_slow=sma_slow,
            trend=self.crossover.trend,
        )
        self.last_price = fair
        outputs.append((Stream.PRICES, self._prices_subject, encode(fair), price_msg_id(book_id)))
        outputs.extend(alerts)
        return outputs
