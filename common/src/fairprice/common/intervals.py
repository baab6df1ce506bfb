"""Candle intervals: their names and lengths (event time, whole minutes from the Unix epoch).

Every interval is a whole number of minutes and every period starts at a multiple of its
length from the epoch (a day is the UTC day), so every period boundary is a minute boundary:
the converter aggregates longer candles from its 1-minute ones.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "BASE_INTERVAL",
    "DEFAULT_INTERVALS",
    "INTERVALS",
    "INTERVAL_MS",
    "CandleInterval",
    "period_start",
]

CandleInterval = Literal["1m", "5m", "15m", "30m", "1h", "4h", "1d"]
INTERVALS: tuple[CandleInterval, ...] = get_args(CandleInterval)
"""Every interval, shortest first."""
INTERVAL_MS: dict[CandleInterval, int] = {
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}
BASE_INTERVAL: CandleInterval = "1m"
"""Built from prices; every other interval is aggregated from it, so it is always on."""
DEFAULT_INTERVALS: tuple[CandleInterval, ...] = ("1m", "5m", "15m", "1h", "4h", "1d")


def period_start(time_ms: int, interval: CandleInterval) -> int:
    """The start of the ``interval`` period holding ``time_ms``."""
    return time_ms - time_ms % INTERVAL_MS[interval]
