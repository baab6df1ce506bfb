"""A symbol's parameters: ``Params``, built by ``params_for`` from its feed or the settings.

A feed chooses the fair-price method, the impact notional, the SMA windows, the candle
intervals, the indicators and the signal strategies of its symbols;
the impact depth and the crossover band are the converter's own. A symbol no feed names (a
converter run without the operator) takes all of them from the ``[converter]`` settings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from fairprice.common.feeds import AlertRule, FairPriceMethod, Feed, Indicators, Strategy
from fairprice.common.intervals import BASE_INTERVAL, DEFAULT_INTERVALS, CandleInterval
from fairprice.converter.settings import ConverterSection

__all__ = ["Params", "params_by_symbol", "params_for"]


@dataclass(frozen=True, slots=True)
class Params:
    """The per-symbol parameters (from the symbol's feed, else the converter's settings)."""

    method: FairPriceMethod = "microprice"
    notional: float = 10_000.0
    depth: int = 20
    sma_fast_s: float = 20.0
    sma_slow_s: float = 60.0
    min_gap: float = 0.0001
    intervals: tuple[CandleInterval, ...] = DEFAULT_INTERVALS
    indicators: Indicators = field(default_factory=Indicators)
    strategies: frozenset[Strategy] = frozenset({"sma_cross"})
    alerts: tuple[AlertRule, ...] = ()
    """The feed's market alerts (``alerting``)."""

    @property
    def history_s(self) -> float:
        """The event time a symbol's state depends on: what a takeover replays."""
        windows = [rule.window_seconds or 0 for rule in self.alerts]
        return float(max([self.sma_slow_s, *windows]))


class _Choices(Protocol):
    """What a feed chooses, and the settings' defaults for it."""

    @property
    def method(self) -> FairPriceMethod: ...
    @property
    def notional(self) -> float: ...
    @property
    def sma_fast_s(self) -> float: ...
    @property
    def sma_slow_s(self) -> float: ...
    @property
    def candle_intervals(self) -> list[CandleInterval]: ...
    @property
    def strategies(self) -> list[Strategy]: ...


def params_for(settings: ConverterSection, feed: _Choices | None = None) -> Params:
    """The parameters of a symbol of ``feed`` (``None``: of a symbol no feed names)."""
    chosen: _Choices = settings if feed is None else feed
    indicators = feed.indicators if isinstance(feed, Feed) else settings.indicators.value()
    return Params(
        # 1m and the indicator interval always (validated so; a hand-written feed may not be)
        intervals=tuple(
            dict.fromkeys((BASE_INTERVAL, *chosen.candle_intervals, indicators.interval))
        ),
        indicators=indicators,
        strategies=frozenset(chosen.strategies),
        method=chosen.method,
        notional=chosen.notional,
        depth=settings.impact_depth,
        sma_fast_s=chosen.sma_fast_s,
        sma_slow_s=chosen.sma_slow_s,
        min_gap=settings.min_gap,
        alerts=feed.alerts if isinstance(feed, Feed) else (),
    )


def params_by_symbol(
    feeds: Iterable[Feed], settings: ConverterSection
) -> dict[tuple[str, str], Params]:
    """Each enabled feed's parameters by ``(exchange, SYMBOL)``."""
    result: dict[tuple[str, str], Params] = {}
    for feed in feeds:
        if not feed.enabled:
            continue
        params = params_for(settings, feed)
        for symbol in feed.symbols:
            result[(feed.exchange, symbol.upper())] = params
    return result
