"""The converter's settings: the ``[converter]`` table of clusters_dev.toml (documented there)."""

from __future__ import annotations

from pydantic import Field, model_validator

from fairprice.common.feeds import FairPriceMethod
from fairprice.common.settings import HttpSettings, Section, ServiceSettings

__all__ = ["ConverterSection", "ConverterSettings"]


class ConverterSection(Section):
    method: FairPriceMethod = "microprice"
    """Default fair-price method (a feed may choose another for its symbols)."""
    notional: float = Field(default=10_000.0, gt=0)
    """Quote-currency notional of the impact price."""
    impact_depth: int = Field(default=20, ge=1)
    """Levels per side the impact price may walk."""
    sma_fast_s: float = Field(default=20.0, gt=0)
    sma_slow_s: float = Field(default=60.0, gt=0)
    min_gap: float = Field(default=0.0001, ge=0)
    """Crossover band as a fraction of the slow SMA (0.0001 = 1 basis point): fast must pass
    slow by more than this for the trend to turn, which stops BUY/SELL flapping."""
    replay_margin_s: float = Field(default=60.0, ge=0)
    """A takeover replays BOOKS from (last price's event time - slow window - this), by the
    stream's own timestamps: room for the exchange's clock being ahead of the broker's."""
    rebuild_concurrency: int = Field(default=4, ge=1)
    """Symbols rebuilt at the same time on a takeover."""
    batch: int = Field(default=500, ge=1)
    """Books handled per turn of the processing loop."""
    max_in_flight: int = Field(default=20_000, ge=1)
    """Published messages awaiting their JetStream ack before publishing waits."""
    latest_interval_s: float = Field(default=1.0, gt=0)
    """How often the KV bucket ``latest`` is written (each symbol at most once per period)."""
    feeds_refresh_s: float = Field(default=10.0, gt=0)
    """How often feeds (per-symbol method, notional, windows) are re-read from KV ``feeds``."""
    heartbeat_s: float = Field(default=1.0, gt=0)
    member_ttl_s: float = Field(default=5.0, gt=0)
    """A replica that stops heartbeating loses its partitions after this long (kill -9)."""
    http: HttpSettings = HttpSettings(port=8082)

    @model_validator(mode="after")
    def _windows_in_order(self) -> ConverterSection:
        if self.sma_fast_s > self.sma_slow_s:
            raise ValueError("sma_fast_s must not be longer than sma_slow_s")
        if self.member_ttl_s <= self.heartbeat_s:
            raise ValueError("member_ttl_s must be longer than heartbeat_s")
        return self


class ConverterSettings(ServiceSettings):
    converter: ConverterSection = ConverterSection()
