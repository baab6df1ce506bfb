"""Depth snapshots over REST, paced by the exchange's request-weight budget.

The exchange limits request weight per IP and minute (Binance: 6000, reported after every
request in ``X-MBX-USED-WEIGHT-1M``); past it, it answers 429 with ``Retry-After``, and an IP
that keeps going after 429s is banned with 418. So:

- ``WeightBudget`` admits a request only while ``used + weight <= budget`` for the current
  minute, where ``used`` is the larger of our own count and the exchange's header (another
  client on the same IP counts too); otherwise it waits for the next minute.
- A 429 or 418 blocks *every* request until ``Retry-After`` has passed (``block``): the only
  requests after a 429 are made once the exchange said we may, so no loop can earn a ban.
- 5xx, timeouts, transport errors and malformed bodies raise ``TransientError`` (the caller
  retries with ``fairprice.common.retry.Backoff``, each attempt paying its weight again).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import httpx

from fairprice.common.errors import InvalidMessageError, RateLimitedError, TransientError
from fairprice.common.logs import get_logger
from fairprice.crawler.exchange import Exchange, Snapshot
from fairprice.crawler.recording import Recorder

__all__ = ["SnapshotClient", "WeightBudget"]

log = get_logger(__name__)

_DEFAULT_RETRY_AFTER = {429: 60.0, 418: 120.0}


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


class SnapshotClient:
    """``await client.fetch(symbol)``: one budgeted snapshot request."""

    def __init__(
        self,
        exchange: Exchange,
        http: httpx.AsyncClient,
        budget: WeightBudget,
        *,
        limit: int,
        recorder: Recorder | None = None,
    ) -> None:
        self._exchange = exchange
        self._http = http
        self.budget = budget
        self._limit = limit
        self._recorder = recorder

    async def fetch(self, symbol: str) -> Snapshot:
        """The snapshot of ``symbol``; ``RateLimitedError`` (after blocking the budget) or
        ``TransientError`` when this attempt failed."""
        request = self._exchange.snapshot_request(symbol, self._limit)
        await self.budget.acquire(request.weight)
        try:
            response = await self._http.get(request.path, params=request.params)
        except httpx.TimeoutException as exc:
            raise TransientError(f"snapshot {symbol}: timed out") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"snapshot {symbol}: {exc!r}") from exc
        used = self._exchange.used_weight(response.headers)
        self.budget.observe(used)
        if self._recorder is not None:
            self._recorder.write(
                "rest",
                url=str(response.request.url),
                status=response.status_code,
                weight="" if used is None else str(used),
                data=response.text,
            )
        status = response.status_code
        if status in (429, 418):
            retry_after = _retry_after(response, _DEFAULT_RETRY_AFTER[status])
            self.budget.block(retry_after)
            log.warning("rate limited", status=status, retry_after_s=retry_after, symbol=symbol)
            raise RateLimitedError(
                f"snapshot {symbol}: HTTP {status}", retry_after=retry_after, status=status
            )
        if status != 200:
            raise TransientError(f"snapshot {symbol}: HTTP {status}")
        try:
            return self._exchange.parse_snapshot(response.content)
        except InvalidMessageError as exc:
            raise TransientError(f"snapshot {symbol}: {exc}") from exc


def _retry_after(response: httpx.Response, default: float) -> float:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default
