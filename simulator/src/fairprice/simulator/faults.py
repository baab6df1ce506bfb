"""Faults on demand: what the simulator breaks, from settings and from the control API.

Rates (``drop_rate``, ``malformed_rate``, ...) stay until changed; counts (``drop_events``,
``truncated_frames``, ...) are used up one by one. Actions that happen once (disconnects, the
``serverShutdown`` event) are methods of the simulator, not state here.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fairprice.simulator.settings import FaultSettings

__all__ = ["FaultPlan", "Faults", "FrameFault"]

FrameFault = Literal["malformed", "truncated"]


class FaultPlan(BaseModel):
    """The body of ``POST /control/faults``: every key optional, unknown keys rejected.

    ``symbol`` scopes ``drop_events`` and ``stale_snapshots`` (``null``: any symbol).
    """

    model_config = ConfigDict(extra="forbid")

    symbol: str | None = None
    drop_rate: float | None = Field(default=None, ge=0, le=1)
    drop_events: int | None = Field(default=None, ge=0)
    """Do not send the next N diff events (of ``symbol``, or of any symbol)."""
    malformed_rate: float | None = Field(default=None, ge=0, le=1)
    malformed_frames: int | None = Field(default=None, ge=0)
    """Send a malformed JSON frame before each of the next N frames."""
    truncated_rate: float | None = Field(default=None, ge=0, le=1)
    truncated_frames: int | None = Field(default=None, ge=0)
    """Cut each of the next N frames short (their events are lost to the client)."""
    stale_snapshots: int | None = Field(default=None, ge=0)
    """The next N depth snapshots are ``stale_ticks`` events old."""
    stale_ticks: int = Field(default=20, ge=1)
    rest_delay_s: float | None = Field(default=None, ge=0)
    rest_errors: int | None = Field(default=None, ge=0)
    """The next N REST requests answer ``rest_error_status``."""
    rest_error_status: int | None = Field(default=None)
    """429, 418 (both with ``Retry-After: retry_after``) or a 5xx."""
    rest_error_rate: float | None = Field(default=None, ge=0, le=1)
    retry_after: int = Field(default=5, ge=0)
    trend_ticks: int | None = None
    """Walk the price of ``symbol`` (``null``: of every book built so far) this many ticks,
    one a market tick, up (positive) or down (negative): a trend that eats the levels on its
    way, far beyond a small snapshot's window. 0 stops a trend."""


class Faults:
    def __init__(self, settings: FaultSettings, seed: int) -> None:
        self._settings = settings
        self._rng = random.Random(f"{seed}:faults")
        self.reset()

    def reset(self) -> None:
        """Back to the faults of the settings; every count cleared."""
        s = self._settings
        self.drop_rate = s.drop_rate
        self.malformed_rate = s.malformed_rate
        self.truncated_rate = s.truncated_rate
        self.rest_delay_s = s.rest_delay_s
        self.rest_error_rate = s.rest_error_rate
        self.rest_error_status = s.rest_error_status
        self.retry_after = 5
        self.drop_events: dict[str | None, int] = {}
        self.stale: dict[str | None, tuple[int, int]] = {}
        self.malformed_frames = 0
        self.truncated_frames = 0
        self.rest_errors = 0

    def apply(self, plan: FaultPlan) -> None:
        symbol = plan.symbol.upper() if plan.symbol else None
        for name in ("drop_rate", "malformed_rate", "truncated_rate", "rest_delay_s"):
            value = getattr(plan, name)
            if value is not None:
                setattr(self, name, value)
        if plan.rest_error_rate is not None:
            self.rest_error_rate = plan.rest_error_rate
        if plan.rest_error_status is not None:
            if plan.rest_error_status not in (418, 429) and not 500 <= plan.rest_error_status < 600:
                raise ValueError("rest_error_status must be 418, 429 or 5xx")
            self.rest_error_status = plan.rest_error_status
        self.retry_after = plan.retry_after
        if plan.drop_events is not None:
            self.drop_events[symbol] = plan.drop_events
        if plan.stale_snapshots is not None:
            self.stale[symbol] = (plan.stale_snapshots, plan.stale_ticks)
        if plan.malformed_frames is not None:
            self.malformed_frames = plan.malformed_frames
        if plan.truncated_frames is not None:
            self.truncated_frames = plan.truncated_frames
        if plan.rest_errors is not None:
            self.rest_errors = plan.rest_errors

    def state(self) -> dict[str, object]:
        return {
            "drop_rate": self.drop_rate,
            "drop_events": {k or "*": v for k, v in self.drop_events.items() if v},
            "malformed_rate": self.malformed_rate,
            "malformed_frames": self.malformed_frames,
            "truncated_rate": self.truncated_rate,
            "truncated_frames": self.truncated_frames,
            "stale_snapshots": {
                k or "*": {"count": c, "ticks": t} for k, (c, t) in self.stale.items() if c
            },
            "rest_delay_s": self.rest_delay_s,
            "rest_errors": self.rest_errors,
            "rest_error_rate": self.rest_error_rate,
            "rest_error_status": self.rest_error_status,
            "retry_after": self.retry_after,
        }

    # ---- questions asked on the hot paths ---------------------------------------------

    def drop(self, symbol: str) -> bool:
        """Whether this diff event of ``symbol`` is to be dropped (uses up a count)."""
        if self.drop_events:
            for key in (symbol, None):
                left = self.drop_events.get(key, 0)
                if left:
                    self.drop_events[key] = left - 1
                    return True
        return self.drop_rate > 0 and self._rng.random() < self.drop_rate

    def frame(self) -> FrameFault | None:
        """A fault for the next frame sent to a client, if any."""
        if self.truncated_frames:
            self.truncated_frames -= 1
            return "truncated"
        if self.malformed_frames:
            self.malformed_frames -= 1
            return "malformed"
        if self.truncated_rate and self._rng.random() < self.truncated_rate:
            return "truncated"
        if self.malformed_rate and self._rng.random() < self.malformed_rate:
            return "malformed"
        return None

    @property
    def frames_faulty(self) -> bool:
        return bool(
            self.truncated_frames
            or self.malformed_frames
            or self.truncated_rate
            or self.malformed_rate
        )

    def stale_ticks(self, symbol: str) -> int:
        """How many events old this snapshot of ``symbol`` must be (0: fresh)."""
        for key in (symbol, None):
            count, ticks = self.stale.get(key, (0, 0))
            if count:
                self.stale[key] = (count - 1, ticks)
                return ticks
        return 0

    def rest_error(self) -> int:
        """The error status this REST request must answer (0: none)."""
        if self.rest_errors:
            self.rest_errors -= 1
            return self.rest_error_status
        if self.rest_error_rate and self._rng.random() < self.rest_error_rate:
            return self.rest_error_status
        return 0
