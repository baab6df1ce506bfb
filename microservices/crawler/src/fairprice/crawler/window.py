"""How deep a snapshot to ask for, and when a book's window has run thin (docs/crawler.md).

A snapshot's weight grows in classes (Binance: 5 / 25 / 50 / 250 for up to 100 / 500 / 1000 /
5000 levels), so at cold start every symbol gets the smallest class that holds ``margin`` times
the published ``depth``: with depth 20 that is 100 levels for weight 5, ten times cheaper than
1,000. The book is right out to the snapshot's edge (``book.OrderBook``); when a side's
known-correct levels fall below ``low_water`` (the price walked towards the edge, or levels
inside it were deleted) the symbol gets a new window: a snapshot one class deeper, up to
``max_limit``, taken in the background and swapped in between two events, so no update id is
missed. Until it arrives the book publishes only the levels it can vouch for.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WindowPolicy", "smallest_limit"]


def smallest_limit(levels: int, classes: tuple[int, ...]) -> int:
    """The smallest snapshot limit of ``classes`` (ascending) holding ``levels`` levels, or
    the largest class when none does."""
    return next((limit for limit in classes if limit >= levels), classes[-1])


@dataclass(frozen=True, slots=True)
class WindowPolicy:
    """Snapshot sizes for one crawler: ``first_limit`` at (re)sync, deeper ones on demand."""

    first_limit: int
    """Levels a side asked for when a symbol (re)syncs."""
    max_limit: int
    """The deepest snapshot a thin window may ask for."""
    low_water: int
    """A side with fewer known-correct levels than this (and not complete) gets a new window."""
    classes: tuple[int, ...]
    """The exchange's snapshot weight classes, ascending."""

    @classmethod
    def for_depth(
        cls,
        depth: int,
        classes: tuple[int, ...],
        *,
        margin: float = 2.0,
        first_limit: int | None = None,
        max_limit: int = 1000,
    ) -> WindowPolicy:
        """The policy for publishing ``depth`` levels: the first snapshot holds ``margin``
        times them (or ``first_limit``); a new window comes below 1.5 times ``depth``, or
        below half the first snapshot if that is less (a new window per deleted level
        would spend the budget on nothing)."""
        first = (
            first_limit
            if first_limit is not None
            else smallest_limit(round(depth * margin), classes)
        )
        return cls(
            first_limit=first,
            max_limit=max(first, max_limit),
            low_water=max(1, min(depth + (depth + 1) // 2, first // 2)),
            classes=classes,
        )

    def deeper(self, limit: int | None) -> int:
        """The limit of the next window after one of ``limit`` levels ran thin: one class
        deeper, up to ``max_limit`` (the same size again once there: a fresh window around
        the price of now)."""
        if limit is None:
            return self.first_limit
        deeper = next((c for c in self.classes if c > limit), self.classes[-1])
        return max(self.first_limit, min(deeper, self.max_limit))
