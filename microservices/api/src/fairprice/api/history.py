"""History from InfluxDB (InfluxQL over ``GET /query``): candles and signals, one page at a time.

A page is at most ``limit`` rows in time order; when more rows follow, ``next_cursor`` is the
time (ms) of the first row of the next page, and asking again with ``start=<cursor>`` continues
exactly there. Rows are keyed by time (InfluxDB keys a point by series and timestamp), so a
page never ends in the middle of one timestamp's rows: two signals of different strategies at
the same event time are on the same page.

Errors::

    TransientError
    └── InfluxUnavailableError   refused, timeout, 5xx, an answer that is not InfluxDB's:
                                 the API answers 503 with Retry-After
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from fairprice.common.errors import TransientError
from fairprice.common.intervals import INTERVALS, CandleInterval
from fairprice.common.settings import InfluxSettings

__all__ = [
    "CANDLE_FIELDS",
    "SIGNAL_FIELDS",
    "HistoryReader",
    "Interval",
    "InfluxUnavailableError",
    "Page",
    "candle_source",
]

Interval = CandleInterval
"""Candle intervals the API serves: every one the converter can make."""

CANDLE_FIELDS = ("open", "high", "low", "close", "count")
SIGNAL_FIELDS = ("strategy", "action", "price", "sma_fast", "sma_slow")
_TAG_VALUE = re.compile(r"^[A-Za-z0-9_.-]+$")


class InfluxUnavailableError(TransientError):
    """InfluxDB did not answer the query."""


def candle_source(interval: Interval) -> tuple[str, str]:
    """Where candles of ``interval`` live: ``(measurement, extra WHERE clause)``.

    The one place that knows the schema of candles: measurement ``candle``, one series per
    ``interval`` tag (docs/architecture.md).
    """
    if interval not in INTERVALS:  # the route validates it; a name is never put in a query
        raise ValueError(f"no candles of interval {interval!r}")
    return "candle", f" AND \"interval\" = '{interval}'"


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    """Each row: ``time_ms`` and the selected fields (missing fields left out)."""
    next_cursor: int | None
    """The ``start`` (ms) of the next page, or ``None`` when this page is the last."""


class HistoryReader:
    """``async with HistoryReader(settings) as history: await history.candles(...)``."""

    def __init__(self, settings: InfluxSettings) -> None:
        self._settings = settings
        headers, auth = settings.credentials()
        self._client = httpx.AsyncClient(
            base_url=settings.url, headers=headers, auth=auth, timeout=settings.timeout_s
        )

    async def __aenter__(self) -> HistoryReader:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.aclose()

    async def ping(self) -> None:
        """Raise ``InfluxUnavailableError`` unless InfluxDB answers ``/ping``."""
        try:
            response = await self._client.get("/ping")
        except httpx.HTTPError as exc:
            raise InfluxUnavailableError(f"influxdb unreachable: {exc!r}") from exc
        if response.status_code >= 300:
            raise InfluxUnavailableError(f"influxdb ping answered {response.status_code}")

    async def candles(
        self, exchange: str, symbol: str, interval: Interval, start_ms: int, end_ms: int, limit: int
    ) -> Page:
        measurement, where = candle_source(interval)
        return await self._page(
            measurement, CANDLE_FIELDS, exchange, symbol, where, start_ms, end_ms, limit
        )

    async def signals(
        self, exchange: str, symbol: str, start_ms: int, end_ms: int, limit: int
    ) -> Page:
        return await self._page(
            "signal", SIGNAL_FIELDS, exchange, symbol, "", start_ms, end_ms, limit
        )

    async def _page(
        self,
        measurement: str,
        fields: tuple[str, ...],
        exchange: str,
        symbol: str,
        where: str,
        start_ms: int,
        end_ms: int,
        limit: int,
    ) -> Page:
        # One row more than asked tells whether another page follows, and where it starts.
        rows = await self._select(
            measurement, fields, exchange, symbol, where, start_ms, end_ms, limit + 1
        )
        if len(rows) <= limit:
            return Page(rows, None)
        cursor = rows[limit]["time_ms"]
        page = [row for row in rows[:limit] if row["time_ms"] < cursor]
        if not page:
            # More than ``limit`` rows share one timestamp: return them all at once.
            rows = await self._select(
                measurement, fields, exchange, symbol, where, cursor, cursor, 10 * limit
            )
            return Page(rows, cursor + 1 if cursor + 1 < end_ms else None)
        return Page(page, cursor)

    async def _select(
        self,
        measurement: str,
        fields: tuple[str, ...],
        exchange: str,
        symbol: str,
        where: str,
        start_ms: int,
        end_ms: int,
        limit: int,
    ) -> list[dict[str, Any]]:
        columns = ", ".join(f'"{name}"' for name in fields)
        query = (
            f'SELECT {columns} FROM "{self._settings.retention_policy}"."{measurement}" '
            f"WHERE \"exchange\" = '{_tag(exchange)}' AND \"symbol\" = '{_tag(symbol)}'"
            f"{where} AND time >= {start_ms}ms AND time < {end_ms}ms "
            f"ORDER BY time ASC LIMIT {limit}"
        )
        params = {"db": self._settings.database, "q": query, "epoch": "ms"}
        try:
            response = await self._client.get("/query", params=params)
        except httpx.HTTPError as exc:
            raise InfluxUnavailableError(f"influxdb unreachable: {exc!r}") from exc
        if response.status_code != 200:
            raise InfluxUnavailableError(
                f"influxdb query answered {response.status_code}: {response.text[:200]}"
            )
        rows: list[dict[str, Any]] = []
        for result in response.json().get("results", []):
            if "error" in result:
                raise InfluxUnavailableError(f"influxdb query failed: {result['error']}")
            for series in result.get("series", []):
                names = series["columns"]
                for values in series["values"]:
                    row = {"time_ms": values[0]}
                    row.update((k, v) for k, v in zip(names[1:], values[1:], strict=True))
                    rows.append({k: v for k, v in row.items() if v is not None})
        return rows


def _tag(value: str) -> str:
    """A tag value safe inside an InfluxQL string literal (the API validates names first)."""
    if not _TAG_VALUE.match(value):
        raise ValueError(f"not a valid name: {value!r}")
    return value
