"""One side-by-side order book that keeps the exchange's decimal strings.

Each side is a dict from an exact integer sort key to the level as the exchange wrote it
(``(price, quantity)`` strings), plus a list of the keys kept sorted with ``bisect``. The key is
the price scaled by 10**``SCALE`` into an ``int``: exact for any price with up to ``SCALE``
fractional digits (Binance writes 8), so two prices never collide or misorder the way float keys
can, and the same price spelt two ways (``"1.5"``, ``"1.50000000"``) is the same level. Bids use
the negated key so that both sides are ascending, best first. A new level costs one key
computation and one ``insort``; an update of an existing level costs a dict store; a deletion
a ``bisect`` and a ``list.pop`` (a memmove, fast even at 5000 levels). The key of a price seen
lately comes from a bounded cache shared by every book (``_BID_KEYS``, ``_ASK_KEYS``):
``bench/crawler.py`` at 1,000 symbols, sync CPU per event 61-65 us without it, 51-52 with.

``apply`` reports whether the top ``depth`` levels changed: a touched level changes the top N
exactly when its key is at or above the N-th best key at the moment it is touched (or the side
holds fewer than N levels), so no top-N copy is compared per event.

The window rule (docs/crawler.md): a snapshot of ``limit`` levels only shows a side out to its
worst price, the *edge*. From the best price out to the edge the book stays exact, because every
change there arrives as a diff; a level a diff sets beyond the edge has the right quantity, but
the levels between the edge and it that never changed are missing. So each side keeps its edge
(``None`` when the snapshot held fewer levels than asked: the whole side, nothing beyond it),
``known()`` counts the levels at or inside the edge, and ``bids``/``asks`` return only those.
A book built with ``window_check=False`` trusts every level it holds, as a plain snapshot + diff
book does (and is wrong once the price walks past the edge: a test shows it).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable
from dataclasses import dataclass

from fairprice.common.errors import InvalidMessageError
from fairprice.common.messages import Level

__all__ = ["SCALE", "OrderBook", "SideWindow", "price_key"]

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


_MAX_CACHED_KEYS = 1 << 17
"""Entries per key cache (``_Side.apply``): ~17 MB each at most, whatever the symbol count."""
_BID_KEYS: dict[str, int] = {}
_ASK_KEYS: dict[str, int] = {}
"""Price text -> the side's sort key, for the prices seen lately across every book: a diff
event mostly touches prices near the top that earlier events touched too, and a dictionary
lookup is many times cheaper than parsing the text again (the module's docstring has the
figure). A pure function's cache: emptied when full."""


def _is_zero(quantity: str) -> bool:
    # "0", "0.00000000", "0." are zero; any other digit is not. Exact, no float parse.
    return not quantity.strip("0.")


class _Side:
    """Levels of one side, best first. ``sign`` is -1 for bids (highest price first)."""

    __slots__ = ("_keys_of", "_top", "_top_depth", "edge", "edge_price", "keys", "levels", "sign")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self._keys_of = _BID_KEYS if sign < 0 else _ASK_KEYS
        self.levels: dict[int, Level] = {}
        self.keys: list[int] = []
        self.edge: int | None = None
        """Key of the snapshot's worst level; ``None``: the snapshot held the whole side."""
        self.edge_price: str | None = None
        # The last top() list, valid until a change reaches the top: the side an event did
        # not touch is not rebuilt (the lists are shared by messages, never mutated).
        self._top: list[Level] | None = None
        self._top_depth = 0

    def load(self, levels: list[Level], limit: int | None) -> None:
        """Replace the side with a snapshot's levels; ``limit``: the levels asked per side
        (``None``: not known, so only an empty side is taken as complete)."""
        sign = self.sign
        self.levels = {
            sign * price_key(level[0]): level for level in levels if not _is_zero(level[1])
        }
        self.keys = sorted(self.levels)
        self._top = None
        self.edge = self.edge_price = None
        if self.keys and (limit is None or len(levels) >= limit):
            self.edge = self.keys[-1]  # the worst level the snapshot held
            self.edge_price = self.levels[self.edge][0]

    def known(self) -> int:
        """How many levels, from the best out, are known to be right (inside the edge)."""
        if self.edge is None:
            return len(self.keys)
        return bisect_right(self.keys, self.edge)

    def apply(self, changes: Iterable[Level], depth: int) -> bool:
        """Set each level (quantity 0 deletes); whether the top ``depth`` changed."""
        levels = self.levels
        keys = self.keys
        keys_of = self._keys_of
        changed = False
        # _is_zero is inlined: this loop runs for every level of every event.
        for level in changes:
            price, qty = level
            key = keys_of.get(price)
            if key is None:
                key = self.sign * price_key(price)  # InvalidMessageError when it is none
                if len(keys_of) >= _MAX_CACHED_KEYS:
                    keys_of.clear()
                keys_of[price] = key
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


@dataclass(frozen=True, slots=True)
class SideWindow:
    """Where one side of a book stands against its snapshot's window."""

    known: int
    """Levels known to be right, counted from the best price."""
    edge: str | None
    """The snapshot's worst price on this side; ``None``: the snapshot held the whole side."""


class OrderBook:
    """Bids and asks of one symbol; ``update_id`` is the last applied exchange update id."""

    __slots__ = ("_asks", "_bids", "update_id", "window_check")

    def __init__(self, *, window_check: bool = True) -> None:
        self._bids = _Side(-1)
        self._asks = _Side(1)
        self.update_id = 0
        self.window_check = window_check

    def load(
        self,
        update_id: int,
        bids: list[Level],
        asks: list[Level],
        *,
        limit: int | None = None,
    ) -> None:
        """Replace the whole book with a snapshot of ``limit`` levels a side (``None``: not
        known); each side's window edge is the snapshot's worst price on it."""
        self._bids.load(bids, limit)
        self._asks.load(asks, limit)
        if not self.window_check:  # trust every level, as if the snapshot held whole sides
            self._bids.edge = self._asks.edge = None
            self._bids.edge_price = self._asks.edge_price = None
        self.update_id = update_id

    def known_bids(self) -> int:
        """Bid levels known to be right, from the best (all of them without the window check)."""
        return self._bids.known()

    def known_asks(self) -> int:
        """Ask levels known to be right, from the best."""
        return self._asks.known()

    def thin(self, below: int) -> bool:
        """Whether a side not held whole knows fewer than ``below`` levels."""
        bids, asks = self._bids, self._asks
        return (bids.edge is not None and bids.known() < below) or (
            asks.edge is not None and asks.known() < below
        )

    def windows(self) -> tuple[SideWindow, SideWindow]:
        """Bids' and asks' known-correct depth and window edge."""
        return _window(self._bids), _window(self._asks)

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
        """The best ``depth`` bids known to be right, highest first (fewer when the window's
        edge is nearer)."""
        side = self._bids
        return side.top(depth if side.edge is None else min(depth, side.known()))

    def asks(self, depth: int) -> list[Level]:
        """The best ``depth`` asks known to be right, lowest first."""
        side = self._asks
        return side.top(depth if side.edge is None else min(depth, side.known()))

    def __len__(self) -> int:
        return len(self._bids.levels) + len(self._asks.levels)


def _window(side: _Side) -> SideWindow:
    return SideWindow(side.known(), side.edge_price)
