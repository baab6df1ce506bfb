"""Sync progress: how many owned symbols are synced, and an estimate of the time left.

``SyncProgress.sample(synced, total)`` is called once a second; the estimate is the symbols
left divided by the rate they synced at over the last ``window_s`` seconds (``None`` while no
symbol synced in that time). The service logs it as ``synced N of M`` and exports it as
``fairprice_crawler_sync_eta_seconds``; ``fairprice status`` shows it per crawler.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

__all__ = ["SyncProgress"]


class SyncProgress:
    def __init__(self, *, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._window_s = window_s
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()
        self.synced = 0
        self.total = 0

    def sample(self, synced: int, total: int) -> None:
        now = self._clock()
        self.synced, self.total = synced, total
        self._samples.append((now, synced))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window_s:
            self._samples.popleft()

    @property
    def eta_s(self) -> float | None:
        """Seconds until every symbol is synced at the recent rate; 0 when all are, ``None``
        when no symbol synced lately (nothing to go by)."""
        left = self.total - self.synced
        if left <= 0:
            return 0.0
        if len(self._samples) < 2:
            return None
        (t0, s0), (t1, s1) = self._samples[0], self._samples[-1]
        if s1 <= s0 or t1 <= t0:
            return None
        return left / ((s1 - s0) / (t1 - t0))

    @property
    def eta_metric(self) -> float:
        eta = self.eta_s
        return math.nan if eta is None else eta
