"""Fair-price methods against an exact Decimal computation, on made-up and recorded books."""

from __future__ import annotations

from decimal import Decimal, getcontext

import pytest

from fairprice.common.messages import Book, Level
from fairprice.converter.fair_price import Quote, Skip, impact_side, price_book

getcontext().prec = 50


def _ref_impact_side(levels: list[Level], notional: Decimal, depth: int) -> Decimal | None:
    remaining, base = notional, Decimal(0)
    for price_text, qty_text in levels[:depth]:
        price, qty = Decimal(price_text), Decimal(qty_text)
        if price * qty >= remaining:
            return notional / (base + remaining / price)
        remaining -= price * qty
        base += qty
    return None


def _reference(
    bids: list[Level], asks: list[Level], notional: str, depth: int
) -> dict[str, object]:
    bid, bid_qty = Decimal(bids[0][0]), Decimal(bids[0][1])
    ask, ask_qty = Decimal(asks[0][0]), Decimal(asks[0][1])
    buy = _ref_impact_side(asks, Decimal(notional), depth)
    sell = _ref_impact_side(bids, Decimal(notional), depth)
    return {
        "mid": (bid + ask) / 2,
        "microprice": (bid * ask_qty + ask * bid_qty) / (bid_qty + ask_qty),
        "impact": (buy + sell) / 2 if buy is not None and sell is not None else None,
        "spread": ask - bid,
        "imbalance": (bid_qty - ask_qty) / (bid_qty + ask_qty),
    }


def _assert_matches(quote: Quote, ref: dict[str, object]) -> None:
    for name, exact in ref.items():
        value = getattr(quote, name)
        if exact is None:
            assert value is None, name
            continue
        assert isinstance(exact, Decimal)
        assert value == pytest.approx(float(exact), rel=1e-13, abs=1e-15), name


BIDS = [("100.00", "2.0"), ("99.50", "3.0"), ("99.00", "50.0")]
ASKS = [("100.50", "1.0"), ("101.00", "4.0"), ("102.00", "50.0")]


@pytest.mark.parametrize("method", ["mid", "microprice", "impact"])
def test_price_book_each_method_matches_decimal_reference(method: str) -> None:
    quote = price_book(BIDS, ASKS, method=method, notional=1000.0, depth=20)  # type: ignore[arg-type]
    assert isinstance(quote, Quote)
    ref = _reference(BIDS, ASKS, "1000", 20)
    _assert_matches(quote, ref)
    assert quote.method == method
    assert quote.price == getattr(quote, method)


def test_price_book_hand_computed_values() -> None:
    quote = price_book(BIDS, ASKS, method="microprice", notional=1000.0, depth=20)
    assert isinstance(quote, Quote)
    assert quote.mid == 100.25
    # (100 * 1 + 100.5 * 2) / 3
    assert quote.microprice == pytest.approx(301 / 3)
    assert quote.spread == 0.5
    assert quote.imbalance == pytest.approx(1 / 3)  # (2 - 1) / (2 + 1)
    # buy 1000: 100.5 (1 unit) + 101 * 4 = 504.5, then 495.5 at 102 -> 4.857843 units
    buy = 1000 / (5 + 495.5 / 102)
    # sell 1000: 200 + 298.5 = 498.5, then 501.5 at 99 -> 5.065657 units
    sell = 1000 / (5 + 501.5 / 99)
    assert quote.impact == pytest.approx((buy + sell) / 2, rel=1e-14)


def test_impact_too_thin_falls_back_to_microprice() -> None:
    quote = price_book(BIDS, ASKS, method="impact", notional=1_000_000.0, depth=20)
    assert isinstance(quote, Quote)
    assert quote.impact is None
    assert quote.method == "microprice"
    assert quote.price == quote.microprice


def test_impact_depth_limits_the_levels_walked() -> None:
    assert impact_side(ASKS, 1000.0, depth=3) is not None
    assert impact_side(ASKS, 1000.0, depth=2) is None  # 504.5 quote in two levels


@pytest.mark.parametrize(
    ("bids", "asks", "reason"),
    [
        ([], [], Skip.EMPTY),
        ([("1.0", "1")], [], Skip.ONE_SIDED),
        ([], [("1.0", "1")], Skip.ONE_SIDED),
        ([("1.1", "1")], [("1.0", "1")], Skip.CROSSED),
        ([("1.0", "1")], [("1.0", "1")], Skip.CROSSED),
        ([("1.0", "0")], [("1.1", "1")], Skip.INVALID),
        ([("nan", "1")], [("1.1", "1")], Skip.INVALID),
        ([("1.0", "inf")], [("1.1", "1")], Skip.INVALID),
        ([("-1.0", "1")], [("1.1", "1")], Skip.INVALID),
        ([("abc", "1")], [("1.1", "1")], Skip.INVALID),
    ],
)
def test_unpriceable_books_are_skipped_with_a_reason(
    bids: list[Level], asks: list[Level], reason: Skip
) -> None:
    assert price_book(bids, asks, method="impact", notional=10.0, depth=20) is reason


def test_malformed_deep_level_gives_no_impact_not_a_crash() -> None:
    asks = [("1.1", "1"), ("oops", "1")]
    quote = price_book([("1.0", "100")], asks, method="impact", notional=50.0, depth=20)
    assert isinstance(quote, Quote)
    assert quote.impact is None


def test_nknusdt_session_every_book_matches_decimal_reference(nknusdt_books: list[Book]) -> None:
    assert len(nknusdt_books) == 149
    thin = 0
    for book in nknusdt_books:
        quote = price_book(book.bids, book.asks, method="impact", notional=1000.0, depth=20)
        assert isinstance(quote, Quote)
        _assert_matches(quote, _reference(book.bids, book.asks, "1000", 20))
        thin += quote.impact is None
    assert thin == 0


def test_nknusdt_final_book_known_prices(nknusdt_books: list[Book]) -> None:
    final = nknusdt_books[-1]
    quote = price_book(final.bids, final.asks, method="microprice", notional=1e4, depth=20)
    assert isinstance(quote, Quote)
    assert round(quote.microprice, 12) == 0.353093766660
    assert quote.mid == pytest.approx(0.3529, abs=1e-15)
    assert quote.price == quote.microprice
