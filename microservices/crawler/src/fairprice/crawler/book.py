"""One side-by-side order book that keeps the exchange's decimal strings.

Each side is a dict from an exact integer sort key to the level as the exchange wrote it
(``(price, quantity)`` strings), plus a list of the keys kept sorted with ``bisect``. The key is
the price scaled by 10**``SCALE`` into an ``int``: exact for any price with up to ``SCALE``
fractional digits (Binance writes 8), so two prices never collide or misorder the way float keys
can, and the same price spelt two ways (``"1.5"``, ``"1.50000000"``) is the same level. Bids use
the negated key so that both sides are ascending, best first. A new level costs one key
computation and one ``insort``; an update of an existing level costs a dict store; a deletion
a ``bisect`` and a ``list.pop`` (a memmove, fast even at 5000 levels).

``apply`` reports whether the top ``depth`` levels changed: a touched level changes the top N
exactly when its key is at or above the N-th best key at the moment it is touched (or the side
holds fewer than N levels), so no top-N copy is compared per event.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable

from fairprice.common.errors import InvalidMessageError
from fairprice.common.messages import Level

__all__ = ["SCALE", "OrderBook", "price_key"]

SCALE = 18
"""Fractional digits a price key holds exactly."""

_PAD = "0" * SCALE


def price_key(price: str) -> int:
    """``price`` scaled by 10**SCALE, exactly; ``InvalidMessageError`` if it cannot be."""
    whole, _, frac = price.partition(".")
    if len(frac) > SCALE:
        frac = frac.rstrip("0")
        if len(frac) > SCALE:
            raise InvalidMessageError(f"price {price!r} has more than {SCALE} fractional digits")
    try:
        return int(whole + frac + _PAD[len(frac) :])
    except ValueError:
        raise InvalidMessageError(f"price {price!r} is not a decimal number") from None


def _is_zero(quantity: str) -> bool:
    # "0", "0.00000000", "0." are zero; any other digit is not. Exact, no float parse.
    return not quantity.strip("0.")


class _Side:
    """Levels of one side, best first. ``sign`` is -1 for bids (highest price first)."""

    __slots__ = ("_top", "_top_depth", "keys", "levels", "sign")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.levels: dict[int, Level] = {}
        self.keys: list[int] = []
        # The last top() list, valid until a change reaches the top: the side an event did
        # not touch is not rebuilt (the lists are shared by messages, never mutated).
        self._top: list[Level] | None = None
        self._top_depth = 0

    def load(self, levels: Iterable[Level]) -> None:
        sign = self.sign
        self.levels = {
            sign * price_key(level[0]): level for level in levels if not _is_zero(level[1])
        }
        self.keys = sorted(self.levels)
        self._top = None

    def apply(self, changes: Iterable[Level], depth: int) -> bool:
        """Set each level (quantity 0 deletes); whether the top ``depth`` changed."""
        levels = self.levels
        keys = self.keys
        sign = self.sign
        changed = False
        # price_key and _is_zero are inlined: this loop runs for every level of every event.
        for level in changes:
            price, qty = level
            whole, _, frac = price.partition(".")
            if len(frac) > SCALE:
                key = sign * price_key(price)
            else:
                try:
                    key = sign * int(whole + frac + _PAD[len(frac) :])
                except ValueError:
                    key = sign * price_key(price)  # raises InvalidMessageError saying why
            if not qty.strip("0."):  # quantity zero: delete
                if key not in levels:
                    continue  # deleting a level we do not hold changes nothing
                if not changed:
                    changed = len(keys) <= depth or key <= keys[depth - 1]
                del levels[key]
                del keys[bisect_left(keys, key)]
            else:
                if not changed:
                    changed = len(keys) < depth or key <= keys[depth - 1]
                if key not in levels:
                    insort(keys, key)
                levels[key] = level  # the parsed (price, qty) tuple itself: no copy
        if changed:
            self._top = None
        return changed

    def top(self, depth: int) -> list[Level]:
        if self._top is None or self._top_depth != depth:
            levels = self.levels
            self._top = [levels[key] for key in self.keys[:depth]]
            self._top_depth = depth
        return self._top


class OrderBook:
    """Bids and asks of one symbol; ``update_id`` is the last applied exchange update id."""

    __slots__ = ("_asks", "_bids", "update_id")

    def __init__(self) -> None:
        self._bids = _Side(-1)
        self._asks = _Side(1)
        self.update_id = 0

    def load(self, update_id: int, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Replace the whole book with a snapshot."""
        self._bids.load(bids)
        self._asks.load(asks)
        self.update_id = update_id

    def apply(
        self, update_id: int, bids: Iterable[Level], asks: Iterable[Level], depth: int
    ) -> bool:
        """Apply one diff event; whether the top ``depth`` levels of either side changed.

        ``InvalidMessageError`` for a price that is not a decimal number, with the event
        possibly half applied: the caller must discard the book.
        """
        bid_changed = self._bids.apply(bids, depth)
        ask_changed = self._asks.apply(asks, depth)
        self.update_id = update_id
        return bid_changed or ask_changed

    def bids(self, depth: int) -> list[Level]:
        """The best ``depth`` bids, highest first."""
        return self._bids.top(depth)

    def asks(self, depth: int) -> list[Level]:
        """The best ``depth`` asks, lowest first."""
        return self._asks.top(depth)

    def __len__(self) -> int:
        return len(self._bids.levels) + len(self._asks.levels)
