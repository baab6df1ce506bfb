"""A MarketFeed's ``.status`` from the pipeline's latest values: pure functions, no I/O.

Per symbol the status shows the latest fair price, mid, SMA values, last signal and when they
were updated. Each symbol is in one of four states:

- ``synced``: a value newer than the staleness threshold, priced with the spec's method;
- ``not synced``: no value yet (the crawler has not synced its book, or the converter has not
  priced it yet);
- ``resyncing``: a fresh value, but priced with another method than the spec's: a spec change
  that the pipeline has not applied yet;
- ``stale``: the last value is older than the threshold (book out of sync, crawler or converter
  down).

Conditions: ``Ready`` is True when the feed is enabled and every symbol is synced; ``Degraded``
is True when some symbol is not, with the reason of the worst one (NotSynced, then Resyncing,
then Stale) and the symbols of each state in its message, or when the spec is no feed
(InvalidSpec).
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping, Sequence
from typing import Any

from fairprice.common.feeds import Feed
from fairprice.common.messages import Latest

__all__ = [
    "SymbolState",
    "feed_status",
    "format_price",
    "format_time",
    "invalid_spec_conditions",
    "symbol_states",
]

_SHOWN_SYMBOLS = 3
"""Symbols listed in the printer column before ``+N``."""


class SymbolState(enum.StrEnum):
    SYNCED = "Synced"
    NOT_SYNCED = "NotSynced"
    RESYNCING = "Resyncing"
    STALE = "Stale"


# The Degraded reason is the first state in this order that some symbol is in.
_WORST_FIRST = (SymbolState.NOT_SYNCED, SymbolState.RESYNCING, SymbolState.STALE)


def format_price(value: float) -> str:
    """A price as a short decimal string (8 decimals at most, as exchanges quote them)."""
    text = f"{value:.8f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def format_time(ms: int) -> str:
    """RFC 3339 UTC (what the CRD's ``date-time`` fields and ``date`` columns expect)."""
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def symbol_states(
    feed: Feed,
    latest: Mapping[str, Latest | None],
    *,
    now: datetime.datetime,
    stale_after_s: float,
) -> dict[str, SymbolState]:
    """Each symbol of the feed, in the feed's order, with its state."""
    now_ms = int(now.timestamp() * 1000)
    return {
        symbol: _state(feed, latest.get(symbol), now_ms=now_ms, stale_after_s=stale_after_s)
        for symbol in feed.symbols
    }


def _state(feed: Feed, values: Latest | None, *, now_ms: int, stale_after_s: float) -> SymbolState:
    if values is None:
        return SymbolState.NOT_SYNCED
    if now_ms - values.event_time_ms > stale_after_s * 1000:
        return SymbolState.STALE
    if values.method != feed.method:
        return SymbolState.RESYNCING
    return SymbolState.SYNCED


def feed_status(
    feed: Feed,
    latest: Mapping[str, Latest | None],
    states: Mapping[str, SymbolState],
    *,
    now: datetime.datetime,
    previous_conditions: Sequence[Mapping[str, Any]] = (),
    generation: int | None = None,
) -> dict[str, Any]:
    """The whole ``.status`` the operator keeps (kopf's own keys aside), from the latest values
    and the states ``symbol_states`` gave them."""
    symbols = [_symbol_entry(symbol, latest.get(symbol), states[symbol]) for symbol in states]
    status: dict[str, Any] = {
        "summary": _summary(feed, latest, states),
        "symbols": symbols,
        "conditions": _conditions(feed, states, now, previous_conditions, generation),
    }
    if generation is not None:
        status["observedGeneration"] = generation
    return status


def _symbol_entry(symbol: str, values: Latest | None, state: SymbolState) -> dict[str, Any]:
    entry: dict[str, Any] = {"symbol": symbol, "synced": state is SymbolState.SYNCED}
    if values is None:
        return entry
    entry["method"] = values.method
    entry["fairPrice"] = format_price(values.price)
    if values.sma_fast is not None:
        entry["smaFast"] = format_price(values.sma_fast)
    if values.sma_slow is not None:
        entry["smaSlow"] = format_price(values.sma_slow)
    if values.signal is not None:
        entry["signal"] = values.signal
    if values.signal_time_ms is not None:
        entry["signalTime"] = format_time(values.signal_time_ms)
    entry["lastUpdate"] = format_time(values.event_time_ms)
    if values.alerts:
        entry["alerts"] = list(values.alerts)
    return entry


def _summary(
    feed: Feed, latest: Mapping[str, Latest | None], states: Mapping[str, SymbolState]
) -> dict[str, Any]:
    shown = ",".join(feed.symbols[:_SHOWN_SYMBOLS])
    more = len(feed.symbols) - _SHOWN_SYMBOLS
    synced = sum(state is SymbolState.SYNCED for state in states.values())
    summary: dict[str, Any] = {
        "symbols": f"{shown} +{more}" if more > 0 else shown,
        "synced": f"{synced}/{len(feed.symbols)}",
    }
    firing = sum(len(v.alerts) for v in latest.values() if v is not None)
    if firing:
        summary["alertsFiring"] = firing
    first = latest.get(feed.symbols[0])
    if first is not None:
        summary["fairPrice"] = format_price(first.price)
        if first.signal is not None:
            summary["signal"] = first.signal
    times = [values.event_time_ms for values in latest.values() if values is not None]
    if times:
        summary["lastUpdate"] = format_time(max(times))
    return summary


def _conditions(
    feed: Feed,
    states: Mapping[str, SymbolState],
    now: datetime.datetime,
    previous: Sequence[Mapping[str, Any]],
    generation: int | None,
) -> list[dict[str, Any]]:
    by_state: dict[SymbolState, list[str]] = {}
    for symbol, state in states.items():
        by_state.setdefault(state, []).append(symbol)
    worst = next((state for state in _WORST_FIRST if state in by_state), None)
    details = "; ".join(
        f"{state.value}: {','.join(by_state[state])}" for state in _WORST_FIRST if state in by_state
    )
    if not feed.enabled:
        ready = ("False", "Disabled", "the feed is disabled (spec.enabled: false)")
        degraded = ("False", "Disabled", "the feed is disabled")
    elif worst is None:
        ready = ("True", "AllSynced", f"all {len(states)} symbols synced")
        degraded = ("False", "AllSynced", "")
    else:
        ready = ("False", worst.value, details)
        degraded = ("True", worst.value, details)
    return _pair(ready, degraded, now=now, previous=previous, generation=generation)


def invalid_spec_conditions(
    message: str,
    *,
    now: datetime.datetime,
    previous_conditions: Sequence[Mapping[str, Any]] = (),
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """The conditions of an object whose spec is no feed (its last valid feed, if any, stays
    in the bucket until the spec is fixed or the object deleted)."""
    return _pair(
        ("False", "InvalidSpec", message),
        ("True", "InvalidSpec", message),
        now=now,
        previous=previous_conditions,
        generation=generation,
    )


def _pair(
    ready: tuple[str, str, str],
    degraded: tuple[str, str, str],
    *,
    now: datetime.datetime,
    previous: Sequence[Mapping[str, Any]],
    generation: int | None,
) -> list[dict[str, Any]]:
    old = {str(condition.get("type")): condition for condition in previous}
    return [
        _condition(kind, *values, now=now, old=old.get(kind), generation=generation)
        for kind, values in (("Ready", ready), ("Degraded", degraded))
    ]


def _condition(
    kind: str,
    status: str,
    reason: str,
    message: str,
    *,
    now: datetime.datetime,
    old: Mapping[str, Any] | None,
    generation: int | None,
) -> dict[str, Any]:
    # The transition time moves only when the condition's status flips, as Kubernetes does.
    if old is not None and old.get("status") == status and old.get("lastTransitionTime"):
        since = str(old["lastTransitionTime"])
    else:
        since = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    condition: dict[str, Any] = {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition
