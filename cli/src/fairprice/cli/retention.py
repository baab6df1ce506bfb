"""How long a stream holds messages at the rate it fills, and how much of that a consumer's
backlog already takes: what `fairprice status` says about outages.

A stream with ``max_bytes`` and ``max_age`` that discards the oldest keeps a message for
``min(max_age, max_bytes / bytes per second)``. The rate is the stream's own: the bytes it
holds over the time between its first and last message (for a full stream, the recent rate).
A consumer whose backlog reaches the whole of that loses messages unread (the storer counts
them, docs/storer.md); past half of it, `fairprice status` warns.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

__all__ = ["WARN_SHARE", "StreamHolding", "format_duration"]

WARN_SHARE = 0.5
"""The share of a stream's limit that a consumer's backlog may take before a warning."""


def _time(value: str) -> datetime.datetime:
    # JetStream's timestamps carry nanoseconds; Python parses at most microseconds.
    head, _, rest = value.rstrip("Z").partition(".")
    micros = (rest + "000000")[:6]
    return datetime.datetime.fromisoformat(f"{head}.{micros}+00:00")


@dataclass(frozen=True)
class StreamHolding:
    name: str
    messages: int
    bytes: int
    max_bytes: int
    max_age_s: float
    span_s: float
    """Seconds between the stream's first and last message."""

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> StreamHolding:
        """From the JetStream API's stream info (``$JS.API.STREAM.INFO.<name>``)."""
        config, state = info["config"], info["state"]
        span = 0.0
        if state.get("messages", 0) > 1:
            span = (_time(state["last_ts"]) - _time(state["first_ts"])).total_seconds()
        return cls(
            name=config["name"],
            messages=state.get("messages", 0),
            bytes=state.get("bytes", 0),
            max_bytes=config.get("max_bytes", -1),
            max_age_s=config.get("max_age", 0) / 1e9,
            span_s=span,
        )

    @property
    def holds_s(self) -> float | None:
        """Seconds a message stays at the current rate (``None``: no limit, or no rate yet)."""
        limits = []
        if self.max_age_s > 0:
            limits.append(self.max_age_s)
        if self.max_bytes > 0 and self.bytes > 0 and self.span_s > 0:
            limits.append(self.max_bytes / (self.bytes / self.span_s))
        return min(limits) if limits else None

    def backlog_share(self, pending: int) -> float:
        """The share of the stream's limit that ``pending`` unread messages take (1: the
        oldest of them are being discarded)."""
        if pending <= 0 or self.messages == 0:
            return 0.0
        shares = []
        if self.max_bytes > 0:
            shares.append(pending * (self.bytes / self.messages) / self.max_bytes)
        holds = self.holds_s
        if holds and self.span_s > 0:
            shares.append(pending / (self.messages / self.span_s) / holds)
        return max(shares, default=0.0)


def format_duration(seconds: float | None) -> str:
    """``"45 s"``, ``"2.4 min"``, ``"3.0 h"``, ``"7.0 d"``; ``"-"`` for no limit or no rate."""
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
