"""Market alerts in the symbol pipeline: each firing and resolution once, at the price that
made it, and the same events under the same ids after a takeover from any point."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable

import pytest

from fairprice.common.feeds import STRATEGIES, AlertRule, Indicators
from fairprice.common.messages import Alert, Book, FairPrice, Signal, decode
from fairprice.common.subjects import Stream
from fairprice.converter.fair_price import Skip
from fairprice.converter.params import Params
from fairprice.converter.symbol_pipeline import Output, SymbolPipeline

BASE = Params(sma_fast_s=5.0, sma_slow_s=20.0, min_gap=0.0002)


def _params(books: list[Book]) -> Params:
    """Rules around the books' own prices: a level in the middle, a move that happens."""
    prices = [
        decode(o[2], FairPrice).price
        for _, o in _run_by_book(books, SymbolPipeline("sim", books[0].symbol, BASE))
        if o[0] is Stream.PRICES
    ]
    level = statistics.median(prices)
    rules = (
        AlertRule(name="above", kind="above", level=level, severity="critical"),
        AlertRule(name="below", kind="below", level=level),
        AlertRule(name="move", kind="move", percent=0.05, window_seconds=30),
        AlertRule(name="buy", kind="signal", strategy="sma_cross", action="BUY"),
        AlertRule(name="any-signal", kind="signal"),
        AlertRule(name="quiet", kind="stale", seconds=20),
    )
    return dataclasses.replace(BASE, alerts=rules)


def _run_by_book(books: list[Book], pipeline: SymbolPipeline) -> list[tuple[int, Output]]:
    outputs: list[tuple[int, Output]] = []
    for book in books:
        result = pipeline.process(book)
        if not isinstance(result, Skip):
            outputs.extend((book.update_id, output) for output in result)
    return outputs


def _alerts(outputs: list[tuple[int, Output]]) -> list[Alert]:
    return [decode(o[2], Alert) for _, o in outputs if o[0] is Stream.ALERTS]


def test_alerts_fire_and_resolve_once_at_the_crossing_price(
    make_books: Callable[..., list[Book]],
) -> None:
    books = make_books("AAAUSDT", 3000)
    params = _params(books)
    outputs = _run_by_book(books, SymbolPipeline("sim", "AAAUSDT", params))
    alerts = _alerts(outputs)
    level = params.alerts[0].level
    assert level is not None
    for rule in ("above", "below", "move", "buy"):
        states = [a.state for a in alerts if a.rule == rule]
        assert len(states) >= 2, rule
        # firing, resolved, firing, ...: never twice the same in a row
        assert states[0] == "firing" and all(
            a != b for a, b in zip(states, states[1:], strict=False)
        )
    for alert in alerts:
        if alert.rule == "above":
            assert (alert.price > level) == (alert.state == "firing")
    signals = [o for _, o in outputs if o[0] is Stream.SIGNALS]
    any_signal = [a for a in alerts if a.rule == "any-signal"]
    assert len(any_signal) == 2 * len(signals)
    ids = [o[3] for _, o in outputs if o[0] is Stream.ALERTS]
    assert len(ids) == len(set(ids))
    assert all(i.split(":alert:")[1].rsplit(":", 1)[1] in ("firing", "resolved") for i in ids)
    assert {a.severity for a in alerts if a.rule == "above"} == {"critical"}


def test_a_stale_alert_fires_once_per_gap_with_its_start_and_resolves_with_its_end(
    make_books: Callable[..., list[Book]],
) -> None:
    """Every gap of more than 20 s of event time between two fair prices (the series pauses
    30-90 s now and then): a firing at the last price before it, at the moment the gap
    reached 20 s, and a resolution at the price after it; nothing else."""
    books = make_books("AAAUSDT", 3000)
    outputs = _run_by_book(books, SymbolPipeline("sim", "AAAUSDT", _params(books)))
    prices = [decode(o[2], FairPrice) for _, o in outputs if o[0] is Stream.PRICES]
    gaps = [
        (before, after)
        for before, after in zip(prices, prices[1:], strict=False)
        if after.event_time_ms - before.event_time_ms > 20_000
    ]
    assert gaps, "the series has no gap: the test proves nothing"
    quiet = [a for a in _alerts(outputs) if a.rule == "quiet"]
    assert [(a.state, a.update_id, a.event_time_ms, a.price) for a in quiet] == [
        event
        for before, after in gaps
        for event in (
            ("firing", before.update_id, before.event_time_ms + 20_000, before.price),
            ("resolved", after.update_id, after.event_time_ms, after.price),
        )
    ]
    assert {a.kind for a in quiet} == {"stale"}


def test_signal_alerts_fire_at_the_signals_of_their_strategy(
    make_long_books: Callable[..., list[Book]],
) -> None:
    """A rule naming rsi_reversal or macd_cross fires (and resolves) at each signal of that
    strategy, with its action if it names one; a rule naming none at every signal."""
    books = make_long_books("CCCUSDT", 600, seed=3)
    rules = (
        AlertRule(name="rsi", kind="signal", strategy="rsi_reversal"),
        AlertRule(name="macd-buy", kind="signal", strategy="macd_cross", action="BUY"),
        AlertRule(name="any", kind="signal"),
    )
    params = dataclasses.replace(
        BASE,
        indicators=Indicators(rsi_period=5, macd_fast=3, macd_slow=6, macd_signal=3),
        strategies=frozenset(STRATEGIES),
        alerts=rules,
    )
    outputs = _run_by_book(books, SymbolPipeline("sim", "CCCUSDT", params))
    signals = [decode(o[2], Signal) for _, o in outputs if o[0] is Stream.SIGNALS]
    alerts = _alerts(outputs)

    def fired(rule: str) -> list[tuple[int, str]]:
        events = [(a.update_id, a.state) for a in alerts if a.rule == rule]
        assert events[1::2] == [(uid, "resolved") for uid, _ in events[::2]]
        return [(uid, state) for uid, state in events if state == "firing"]

    def given(strategy: str | None, action: str | None = None) -> list[tuple[int, str]]:
        """One firing per price that gave such signals (its id: the book and the rule)."""
        matching = [
            (s.update_id, "firing")
            for s in signals
            if strategy in (None, s.strategy) and action in (None, s.action)
        ]
        return list(dict.fromkeys(matching))

    assert given("rsi_reversal") and given("macd_cross", "BUY")
    assert fired("rsi") == given("rsi_reversal")
    assert fired("macd-buy") == given("macd_cross", "BUY")
    assert fired("any") == given(None)
    assert len(given(None)) < len(signals), "no price gave two signals: proves nothing"
    ids = [o[3] for _, o in outputs]
    assert len(ids) == len(set(ids))  # JetStream would drop a second payload under one id
    named = {w for a in alerts if a.rule == "any" for w in a.summary.split()}
    assert named >= set(STRATEGIES)


@pytest.mark.parametrize("cut", [1, 333, 1111, 2345, 2998])
def test_alerts_after_a_takeover_are_those_of_the_lone_replica(
    make_books: Callable[..., list[Book]], cut: int
) -> None:
    """The replay of ``Params.history_s`` (the move window is longer than the slow SMA here)
    rebuilds every rule's state: the same events, bytes and ids, none repeated or missed."""
    books = make_books("BBBUSDT", 3000)
    params = dataclasses.replace(_params(books), sma_slow_s=20.0)
    assert params.history_s == 30.0
    full = _run_by_book(books, SymbolPipeline("sim", "BBBUSDT", params))
    last = decode(
        next(
            o[2]
            for uid, o in reversed(full)
            if o[0] is Stream.PRICES and uid <= books[cut].update_id
        ),
        FairPrice,
    )
    start = min(
        last.event_time_ms - round(params.history_s * 1000),
        last.event_time_ms - last.event_time_ms % 60_000,
    )
    pipeline = SymbolPipeline("sim", "BBBUSDT", params)
    pipeline.resume(last)
    resumed = _run_by_book([b for b in books if b.event_time_ms >= start], pipeline)
    # Candles resume from what CANDLES holds, not from this replay (test_symbol_pipeline
    # covers them); everything else is the replay's alone.
    assert [(uid, o) for uid, o in resumed if o[0] is not Stream.CANDLES] == [
        (uid, o) for uid, o in full if uid > last.update_id and o[0] is not Stream.CANDLES
    ]
    assert {a.rule for a in _alerts(full)} == {r.name for r in params.alerts}


@pytest.mark.parametrize("book_kept", [True, False], ids=["replayed", "gone-from-books"])
def test_a_takeover_inside_a_gap_fires_the_stale_alert_of_the_lone_replica(
    make_books: Callable[..., list[Book]], book_kept: bool
) -> None:
    """The previous owner published the price before a gap and died: the new owner fires and
    resolves the gap as the lone replica does (everything else too when the replay holds that
    price's book), and still the gap's events when BOOKS no longer holds it: the gap is then
    measured from the resumed price (the other rules' state needs the replayed books)."""
    books = make_books("DDDUSDT", 3000)
    params = _params(books)
    full = _run_by_book(books, SymbolPipeline("sim", "DDDUSDT", params))
    prices = [decode(o[2], FairPrice) for _, o in full if o[0] is Stream.PRICES]
    last = next(
        before
        for before, after in zip(prices, prices[1:], strict=False)
        if after.event_time_ms - before.event_time_ms > params.history_s * 1000
    )
    start = last.event_time_ms - round(params.history_s * 1000)
    if not book_kept:
        start = last.event_time_ms + 1
    pipeline = SymbolPipeline("sim", "DDDUSDT", params)
    pipeline.resume(last)
    resumed = _run_by_book([b for b in books if b.event_time_ms >= start], pipeline)

    def compared(outputs: list[tuple[int, Output]]) -> list[tuple[int, Output]]:
        kept = [(uid, o) for uid, o in outputs if o[0] is not Stream.CANDLES]
        return kept if book_kept else [(uid, o) for uid, o in kept if ":alert:quiet:" in o[3]]

    after = compared([(uid, o) for uid, o in full if uid > last.update_id])
    assert compared(resumed) == after
    first_quiet = next(
        alert
        for alert in (decode(o[2], Alert) for _, o in after if o[0] is Stream.ALERTS)
        if alert.rule == "quiet"
    )
    assert (first_quiet.rule, first_quiet.state, first_quiet.update_id) == (
        "quiet",
        "firing",
        last.update_id,
    )
