"""The one retry policy: ``Backoff``, capped exponential delays with full jitter.

Every retry in fairprice waits ``Backoff.delay(attempt)``: uniform in
``[0, min(max_s, base_s * multiplier**attempt)]`` ("full jitter", which spreads the retries of
many replicas so that they do not hit a recovering server at the same moment). Loops that retry
one call in place use ``Backoff.retry``; the crawler's reconnects and snapshot retries, which
schedule the next attempt instead of waiting for it, use ``delay`` alone. Callers:

- the NATS connection at start-up (``fairprice.common.bus``);
- the crawler's WebSocket reconnects and failed snapshots (``[crawler] reconnect_*``,
  ``snapshot_retry_*``);
- the storer's InfluxDB writes, database set-up and dead letters (``[storer.retry]``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from fairprice.common.errors import StoppedError, TransientError
from fairprice.common.lifecycle import wait_or_stop

__all__ = ["Backoff"]

T = TypeVar("T")

OnRetry = Callable[[BaseException, int, float], Awaitable[None]]
"""Told of each failure before its wait: ``(error, attempt from 0, delay in seconds)``."""


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float
    max_s: float
    multiplier: float = 2.0

    def delay(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (0 for the first retry)."""
        return random.uniform(0, min(self.max_s, self.base_s * self.multiplier**attempt))

    async def retry(
        self,
        call: Callable[[], Awaitable[T]],
        *,
        stop: asyncio.Event | None,
        what: str,
        transient: tuple[type[BaseException], ...] = (TransientError,),
        on_retry: OnRetry | None = None,
        attempts: int | None = None,
    ) -> T:
        """``await call()`` until it returns, waiting ``delay`` after each ``transient`` error.

        ``StoppedError("stopped before <what>")`` when ``stop`` is set during a wait; the last
        error itself once ``attempts`` calls (``None``: no limit) have failed.
        """
        attempt = 0
        while True:
            try:
                return await call()
            except transient as exc:
                if attempts is not None and attempt + 1 >= attempts:
                    raise
                delay = self.delay(attempt)
                if on_retry is not None:
                    await on_retry(exc, attempt, delay)
                if stop is None:
                    await asyncio.sleep(delay)
                elif stop.is_set() or await wait_or_stop(stop, delay):
                    raise StoppedError(f"stopped before {what}") from exc
                attempt += 1
