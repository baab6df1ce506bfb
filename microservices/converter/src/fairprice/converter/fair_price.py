"""The fair price of one order book: mid, microprice and impact price, spread and imbalance.

Prices and quantities arrive as the exchange's decimal strings; ``float()`` of such a string is
the correctly rounded double, and every derived value is a few float operations from there, so
the result agrees with an exact Decimal computation to about 1e-15 relative (the tests check it
against one). A book that cannot be priced (empty, one-sided, crossed, or with a level that is
not a positive number) is not an error: ``price_book`` returns the reason as a ``Skip`` and the
service counts it by that reason, so no NaN or infinity ever reaches the wire.

The impact price is the mean of the average prices paid to *buy* ``notional`` (quote currency)
through the asks and received to *sell* ``notional`` through the bids, walking at most ``depth``
levels each side. When either side holds less than ``notional`` in those levels the book is too
thin: ``impact`` is ``None`` and a method of ``impact`` falls back to the microprice.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from fairprice.common.feeds import FairPriceMethod
from fairprice.common.messages import Level

__all__ = ["Quote", "Skip", "impact_side", "price_book"]


class Skip(enum.StrEnum):
    """Why a book was not priced (a metric label: a small fixed set)."""

    EMPTY = "empty"
    ONE_SIDED = "one_sided"
    CROSSED = "crossed"
    INVALID = "invalid"
    """A best level whose price or quantity is not a positive finite number."""
    STALE = "stale"
    """An update id not after the last one processed for the symbol (out of order)."""


@dataclass(frozen=True, slots=True)
class Quote:
    """The derived values of one priceable book."""

    price: float
    method: FairPriceMethod
    """The method that produced ``price`` (``microprice`` when impact fell back)."""
    mid: float
    microprice: float
    impact: float | None
    spread: float
    imbalance: float


def _positive(text: str) -> float:
    value = float(text)
    if not (value > 0.0 and math.isfinite(value)):
        raise ValueError(text)
    return value


def impact_side(levels: list[Level], notional: float, depth: int) -> float | None:
    """The average price of trading ``notional`` quote through the first ``depth`` levels,
    or ``None`` when they hold less than that (or a level is malformed)."""
    remaining = notional
    base = 0.0
    for price_text, qty_text in levels[:depth]:
        try:
            price = _positive(price_text)
            qty = float(qty_text)
        except ValueError:
            return None
        if not (qty >= 0.0 and math.isfinite(qty)):
            return None
        quote = price * qty
        if quote >= remaining:
            base += remaining / price
            return notional / base
        remaining -= quote
        base += qty
    return None


def price_book(
    bids: list[Level],
    asks: list[Level],
    *,
    method: FairPriceMethod,
    notional: float,
    depth: int,
) -> Quote | Skip:
    """The fair price of a book (levels best first), or why it has none."""
    if not bids or not asks:
        return Skip.EMPTY if not bids and not asks else Skip.ONE_SIDED
    try:
        bid, bid_qty = _positive(bids[0][0]), _positive(bids[0][1])
        ask, ask_qty = _positive(asks[0][0]), _positive(asks[0][1])
    except (ValueError, IndexError):
        return Skip.INVALID
    if bid >= ask:
        return Skip.CROSSED
    mid = (bid + ask) / 2.0
    depth_qty = bid_qty + ask_qty
    microprice = (bid * ask_qty + ask * bid_qty) / depth_qty
    impact: float | None = None
    buy = impact_side(asks, notional, depth)
    if buy is not None:
        sell = impact_side(bids, notional, depth)
        if sell is not None:
            impact = (buy + sell) / 2.0
    used: FairPriceMethod
    if method == "mid":
        price, used = mid, method
    elif method == "impact" and impact is not None:
        price, used = impact, method
    else:
        price, used = microprice, "microprice"
    return Quote(
        price=price,
        method=used,
        mid=mid,
        microprice=microprice,
        impact=impact,
        spread=ask - bid,
        imbalance=(bid_qty - ask_qty) / depth_qty,
    )
