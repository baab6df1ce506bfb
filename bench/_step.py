"""What every step of bench/end_to_end.py shares, fairprice's and the peer's (bench/peer.py):
the load, what keeping up means, and the figures of one process over a measured window."""

from __future__ import annotations

from dataclasses import dataclass

import psutil

EVENTS_PER_SYMBOL_S = 10
"""``@depth@100ms``: one diff event per symbol per 100 ms tick."""
LAG_BOUND_S = 2.0
"""Keeping up: e2e p99 and every consumer's backlog stay under this many seconds."""
FEED_SHARE = 0.95
"""Keeping up: the feed (fairprice's crawler, the peer) applies at least this share of the
events asked for."""
SIMULATOR_ENV = {"FAIRPRICE_SIMULATOR__WEIGHT_LIMIT": str(10**9)}
"""Snapshots are never refused for weight: a step measures throughput, not start-up pacing."""


@dataclass
class Stage:
    """One process over the measured window."""

    cores: float
    """CPU seconds per second (1.0: one core busy)."""
    cpu_s_per_1k_events: float
    rss_mb: float


def busy() -> float:
    """CPU seconds the whole machine has spent not idle (every process, ours or not)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))
