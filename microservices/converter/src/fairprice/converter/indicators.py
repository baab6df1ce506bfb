"""Time-window SMAs and the crossover rule: pure, exact, replayable.

**Windows.** The SMA over ``span_ms`` at a price of event time ``t`` is the mean of the prices
with event time in ``(t - span_ms, t]``: a time window, not a count, so a gap in the data
shrinks it rather than stretching it into the past. Before the symbol's history spans the window
the SMA is the mean of what there is.

**Exactness.** A running float sum drifts: after adding and removing the same values it is no
longer what a fresh sum of the window would be, so a replica that rebuilt a window from the
stream would publish different bytes than the one that lived through it. Every double is an
integer multiple of 2**-1074, so the window keeps the *exact* sum as a Python integer in those
units; the mean is that integer divided by ``count * 2**1074``, which Python rounds correctly.
The result depends only on the values in the window, never on the path that led there, at a
cost of a few hundred nanoseconds per price.

**Crossover.** ``trend`` is +1 once fast exceeds slow by more than ``min_gap`` (a fraction of
slow), -1 once it is below by more than that, and otherwise keeps its last value: a band that
stops flapping. BUY on a change from -1 to +1, SELL on +1 to -1; the first decision after
start (from 0) is not a crossing and signals nothing.
"""

from __future__ import annotations

from collections import deque

from fairprice.common.messages import Action

__all__ = ["Crossover", "SmaWindow"]

_SHIFT = 1074  # 2**-1074 is the smallest positive double (subnormal)


def _exact(value: float) -> int:
    """``value`` as an integer number of 2**-1074 units (exact for every finite double)."""
    numerator, denominator = value.as_integer_ratio()
    # The denominator is a power of two no larger than 2**1074.
    return numerator << (_SHIFT + 1 - denominator.bit_length())


class SmaWindow:
    """The simple moving average over the last ``span_ms`` of event time."""

    __slots__ = ("_items", "_total", "span_ms")

    def __init__(self, span_ms: int) -> None:
        self.span_ms = span_ms
        self._items: deque[tuple[int, int]] = deque()  # (event time, exact value)
        self._total = 0

    def __len__(self) -> int:
        return len(self._items)

    def push(self, time_ms: int, value: float) -> float:
        """Add a value at ``time_ms`` (non-decreasing); return the SMA including it."""
        exact = _exact(value)
        items = self._items
        items.append((time_ms, exact))
        self._total += exact
        oldest = time_ms - self.span_ms
        while items[0][0] <= oldest:
            self._total -= items.popleft()[1]
        return self._total / (len(items) << _SHIFT)


class Crossover:
    """BUY/SELL when the fast SMA crosses the slow one by more than ``min_gap`` of slow."""

    __slots__ = ("min_gap", "trend")

    def __init__(self, min_gap: float, trend: int = 0) -> None:
        self.min_gap = min_gap
        self.trend = trend

    def update(self, fast: float, slow: float) -> Action | None:
        band = abs(slow) * self.min_gap
        diff = fast - slow
        if diff > band:
            new = 1
        elif diff < -band:
            new = -1
        else:
            return None
        previous, self.trend = self.trend, new
        if previous == -new:
            return "BUY" if new == 1 else "SELL"
        return None
