"""The symbol pipeline: determinism, and a takeover that resumes exactly where PRICES ends."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fairprice.common.messages import Book, FairPrice, decode
from fairprice.common.subjects import Stream
from fairprice.converter.fair_price import Skip
from fairprice.converter.params import Params
from fairprice.converter.symbol_pipeline import Output, SymbolPipeline

PARAMS = Params(sma_fast_s=5.0, sma_slow_s=20.0, min_gap=0.0002)


def _run_by_book(books: list[Book], pipeline: SymbolPipeline) -> list[tuple[int, Output]]:
    """Every output with the update id of the book that produced it."""
    outputs: list[tuple[int, Output]] = []
    for book in books:
        result = pipeline.process(book)
        if not isinstance(result, Skip):
            outputs.extend((book.update_id, output) for output in result)
    return outputs


def _run(books: list[Book], pipeline: SymbolPipeline) -> list[Output]:
    return [output for _, output in _run_by_book(books, pipeline)]


def _fresh(books: list[Book]) -> list[Output]:
    return _run(books, SymbolPipeline("sim", books[0].symbol, PARAMS))


def test_pipeline_outputs_all_kinds_and_skips(make_books: Callable[..., list[Book]]) -> None:
    books = make_books("AAAUSDT", 3000)
    pipeline = SymbolPipeline("sim", "AAAUSDT", PARAMS)
    skips = [r for b in books if isinstance(r := pipeline.process(b), Skip)]
    outputs = _fresh(books)
    kinds = {stream for stream, *_ in outputs}
    assert kinds == {Stream.PRICES, Stream.SIGNALS, Stream.CANDLES}
    assert {Skip.CROSSED, Skip.ONE_SIDED} <= set(skips)
    prices = [o for o in outputs if o[0] is Stream.PRICES]
    assert len(prices) == len(books) - len(skips)
    ids = [o[3] for o in outputs]
    assert len(ids) == len(set(ids))
    actions = [decode(o[2], FairPrice) for o in prices]
    assert all(p.sma_fast is not None and p.sma_slow is not None for p in actions)


def test_pipeline_same_books_give_byte_identical_outputs(
    make_books: Callable[..., list[Book]],
) -> None:
    books = make_books("BBBUSDT", 2000)
    assert _fresh(books) == _fresh(books)


def test_pipeline_signals_alternate(make_books: Callable[..., list[Book]]) -> None:
    outputs = _fresh(make_books("CCCUSDT", 4000))
    signals = [o[3].rsplit(":", 1)[1] for o in outputs if o[0] is Stream.SIGNALS]
    assert len(signals) >= 4
    assert all(a != b for a, b in zip(signals, signals[1:], strict=False))


def test_pipeline_stale_book_is_skipped(make_books: Callable[..., list[Book]]) -> None:
    books = make_books("DDDUSDT", 10)
    pipeline = SymbolPipeline("sim", "DDDUSDT", PARAMS)
    _run(books, pipeline)
    assert pipeline.process(books[5]) is Skip.STALE


@pytest.mark.parametrize("cut", [1, 7, 250, 1111, 2345, 2998])
def test_pipeline_resumed_from_last_price_continues_identically(
    make_books: Callable[..., list[Book]], cut: int
) -> None:
    """A replica that takes over after the price of book ``cut`` and replays only the last
    slow window (or from the start of its minute) publishes exactly what the lone replica
    published after it: same bytes, same ids, nothing missing."""
    books = make_books("EEEUSDT", 3000)
    full = _run_by_book(books, SymbolPipeline("sim", "EEEUSDT", PARAMS))
    last = decode(
        next(
            o[2]
            for uid, o in reversed(full)
            if o[0] is Stream.PRICES and uid <= books[cut].update_id
        ),
        FairPrice,
    )
    start = min(last.event_time_ms - 20_000, last.event_time_ms - last.event_time_ms % 60_000)
    replay = [b for b in books if b.event_time_ms >= start]
    assert len(replay) < len(books) - cut + 200  # a bounded replay, not the whole history
    pipeline = SymbolPipeline("sim", "EEEUSDT", PARAMS)
    pipeline.resume(last)
    resumed = _run(replay, pipeline)
    expected = [o for uid, o in full if uid > last.update_id]
    assert resumed == expected


def test_pipeline_resumed_just_before_each_signal_still_signals(
    make_books: Callable[..., list[Book]],
) -> None:
    """The crossover trend rides on the price: a takeover right before a crossing sees it."""
    books = make_books("FFFUSDT", 4000)
    full = _run_by_book(books, SymbolPipeline("sim", "FFFUSDT", PARAMS))
    prices = {uid: o[2] for uid, o in full if o[0] is Stream.PRICES}
    signal_books = [uid for uid, o in full if o[0] is Stream.SIGNALS]
    assert len(signal_books) >= 3
    for uid in signal_books:
        last = decode(prices[max(u for u in prices if u < uid)], FairPrice)
        replay = [b for b in books if b.event_time_ms >= last.event_time_ms - 60_000]
        pipeline = SymbolPipeline("sim", "FFFUSDT", PARAMS)
        pipeline.resume(last)
        assert _run(replay, pipeline) == [o for u, o in full if u > last.update_id]
