"""Depth snapshots over REST, paced by the exchange's request-weight budget (``budget``).

- Every request first waits for its weight in the ``WeightBudget``, and the
  ``X-MBX-USED-WEIGHT-1M`` header of every answer corrects the budget's count.
- A 429 or 418 blocks *every* request until ``Retry-After`` has passed (``block``): the only
  requests after a 429 are made once the exchange said we may, so no loop can earn a ban.
- 5xx, timeouts, transport errors and malformed bodies raise ``TransientError`` (the caller
  retries with ``fairprice.common.retry.Backoff``, each attempt paying its weight again).
"""

from __future__ import annotations

import dataclasses

import httpx

from fairprice.common.errors import InvalidMessageError, RateLimitedError, TransientError
from fairprice.common.logs import get_logger
from fairprice.crawler.budget import WeightBudget
from fairprice.crawler.exchange import Exchange, Snapshot, SnapshotRequest
from fairprice.crawler.recording import Recorder

__all__ = ["SnapshotClient"]

log = get_logger(__name__)

_DEFAULT_RETRY_AFTER = {429: 60.0, 418: 120.0}


class SnapshotClient:
    """``await client.fetch(symbol, limit)``: one budgeted snapshot request."""

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

    async def fetch(self, symbol: str, limit: int | None = None) -> Snapshot:
        """The snapshot of ``symbol``, ``limit`` levels a side (default: the client's);
        ``RateLimitedError`` (after blocking the budget) or ``TransientError`` when this
        attempt failed."""
        limit = limit or self._limit
        body = await self._get(self._exchange.snapshot_request(symbol, limit), f"snapshot {symbol}")
        try:
            snapshot = self._exchange.parse_snapshot(body)
        except InvalidMessageError as exc:
            raise TransientError(f"snapshot {symbol}: {exc}") from exc
        return dataclasses.replace(snapshot, limit=limit)

    async def weight_limit(self, symbol: str | None = None) -> int | None:
        """The exchange's request weight per minute as it states it (``None``: it does not),
        asked with ``symbol`` (one the exchange lists: a smaller answer); the same errors as
        ``fetch``."""
        body = await self._get(self._exchange.limits_request(symbol), "rate limits")
        try:
            return self._exchange.parse_weight_limit(body)
        except InvalidMessageError as exc:
            raise TransientError(f"rate limits: {exc}") from exc

    async def _get(self, request: SnapshotRequest, what: str) -> bytes:
        await self.budget.acquire(request.weight)
        try:
            response = await self._http.get(request.path, params=request.params)
        except httpx.TimeoutException as exc:
            raise TransientError(f"{what}: timed out") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"{what}: {exc!r}") from exc
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
            log.warning("rate limited", status=status, retry_after_s=retry_after, request=what)
            raise RateLimitedError(f"{what}: HTTP {status}", retry_after=retry_after, status=status)
        if status != 200:
            raise TransientError(f"{what}: HTTP {status}")
        return response.content


def _retry_after(response: httpx.Response, default: float) -> float:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default
