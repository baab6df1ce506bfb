"""The request-weight budget: how much REST weight the crawler may spend, and when.

The exchange limits request weight per IP and minute and states the limit itself (Binance:
``REQUEST_WEIGHT`` in ``exchangeInfo``'s ``rateLimits``, 6000 a minute today, and the weight
used so far in ``X-MBX-USED-WEIGHT-1M`` on every answer); past it, it answers 429 with
``Retry-After``, and an IP that keeps going after 429s is banned with 418. So:

- The budget is the stated limit less a reserve (``weight_limit_budget``: 10 % by default), so
  requests in flight, another client on the same IP and a clock a little off the exchange's
  minute never reach the limit; ``[crawler] weight_budget`` may set it lower.
- ``WeightBudget`` admits a request only while ``used + weight <= budget`` for the current
  minute, where ``used`` is the larger of our own count and the exchange's header (another
  client on the same IP counts too); otherwise it waits for the next minute.
- ``block`` holds every request until a 429's or 418's ``Retry-After`` has passed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from fairprice.common.logs import get_logger

__all__ = ["WeightBudget", "weight_limit_budget"]

log = get_logger(__name__)


def weight_limit_budget(limit: int, reserve: float, cap: int | None = None) -> int:
    """The weight a minute to spend of an exchange ``limit``: ``reserve`` (a fraction) left
    unused, and no more than ``cap`` when one is set."""
    budget = max(1, int(limit * (1.0 - reserve)))
    return budget if cap is None else max(1, min(budget, cap))


class WeightBudget:
    """Request weight per clock minute, kept below ``budget``; ``block`` obeys Retry-After."""

    def __init__(self, budget: int, *, clock: Callable[[], float] = time.time) -> None:
        self.budget = budget
        self._clock = clock
        self.used = 0
        self.spent_total = 0
        self._minute = self._current_minute()
        self._blocked_until = 0.0
        self._lock = asyncio.Lock()

    def _current_minute(self) -> int:
        return int(self._clock() // 60)

    def _roll(self) -> None:
        minute = self._current_minute()
        if minute != self._minute:
            self._minute = minute
            self.used = 0

    @property
    def blocked_for(self) -> float:
        return max(0.0, self._blocked_until - time.monotonic())

    async def acquire(self, weight: int) -> None:
        """Wait until ``weight`` fits in this minute's budget and no Retry-After is pending."""
        async with self._lock:  # one waiter at a time keeps the admissions in order
            while True:
                self._roll()
                if self.blocked_for > 0:
                    await asyncio.sleep(self.blocked_for)
                    continue
                if self.used + weight <= self.budget or self.used == 0:
                    self.used += weight
                    self.spent_total += weight
                    return
                wait = 60.0 - self._clock() % 60 + random.uniform(0.05, 0.5)
                log.info("snapshot weight budget used up", used=self.used, wait_s=round(wait, 1))
                await asyncio.sleep(wait)

    def observe(self, used: int | None) -> None:
        """The exchange's own count of this minute's weight (from a response header)."""
        if used is not None:
            self._roll()
            self.used = max(self.used, used)

    def block(self, seconds: float) -> None:
        self._blocked_until = max(self._blocked_until, time.monotonic() + seconds)
