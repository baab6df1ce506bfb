"""Latest values -> a MarketFeed's status: per-symbol values, summary columns, conditions."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from fairprice.common.feeds import Feed
from fairprice.common.messages import Latest
from fairprice.operator.status import (
    SymbolState,
    feed_status,
    format_price,
    format_time,
    symbol_states,
)

NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)
NOW_MS = int(NOW.timestamp() * 1000)
STALE_S = 30.0


def latest(symbol: str, price: float, *, age_s: float = 1.0, **fields: Any) -> Latest:
    values: dict[str, Any] = {
        "exchange": "binance",
        "symbol": symbol,
        "update_id": 7,
        "event_time_ms": NOW_MS - int(age_s * 1000),
        "method": "microprice",
        "price": price,
        "sma_fast": price + 2,
        "sma_slow": price - 2,
    }
    values.update(fields)
    return Latest(**values)


def status_of(feed: Feed, values: Mapping[str, Latest | None], **kwargs: Any) -> dict[str, Any]:
    states = symbol_states(feed, values, now=NOW, stale_after_s=STALE_S)
    return feed_status(feed, values, states, now=NOW, **kwargs)


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {condition["type"]: condition for condition in status["conditions"]}


def test_symbol_states_tell_synced_missing_stale_and_resyncing_apart() -> None:
    feed = Feed(symbols=["AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT"])
    values = {
        "AAAUSDT": latest("AAAUSDT", 1.0),
        "BBBUSDT": None,
        "CCCUSDT": latest("CCCUSDT", 1.0, age_s=STALE_S + 1),
        "DDDUSDT": latest("DDDUSDT", 1.0, method="mid"),
    }
    assert symbol_states(feed, values, now=NOW, stale_after_s=STALE_S) == {
        "AAAUSDT": SymbolState.SYNCED,
        "BBBUSDT": SymbolState.NOT_SYNCED,
        "CCCUSDT": SymbolState.STALE,
        "DDDUSDT": SymbolState.RESYNCING,
    }


def test_status_shows_each_symbols_latest_values() -> None:
    feed = Feed(symbols=["BTCUSDT"])
    values = {
        "BTCUSDT": latest(
            "BTCUSDT", 65000.125, signal="SELL", signal_time_ms=NOW_MS - 5000, age_s=2
        )
    }
    (entry,) = status_of(feed, values)["symbols"]
    assert entry == {
        "symbol": "BTCUSDT",
        "synced": True,
        "method": "microprice",
        "fairPrice": "65000.125",
        "smaFast": "65002.125",
        "smaSlow": "64998.125",
        "signal": "SELL",
        "signalTime": "2026-03-01T11:59:55Z",
        "lastUpdate": "2026-03-01T11:59:58Z",
    }


def test_status_of_a_symbol_without_values_names_it_only() -> None:
    feed = Feed(symbols=["BTCUSDT"])
    assert status_of(feed, {"BTCUSDT": None})["symbols"] == [{"symbol": "BTCUSDT", "synced": False}]


def test_summary_shows_the_first_symbol_and_synced_over_total() -> None:
    feed = Feed(symbols=["ETHUSDT", "BTCUSDT"])
    values = {
        "ETHUSDT": latest("ETHUSDT", 3200.5, signal="BUY", age_s=3),
        "BTCUSDT": latest("BTCUSDT", 65000.0, age_s=1),
    }
    assert status_of(feed, values)["summary"] == {
        "symbols": "ETHUSDT,BTCUSDT",
        "synced": "2/2",
        "fairPrice": "3200.5",
        "signal": "BUY",
        "lastUpdate": "2026-03-01T11:59:59Z",  # the newest of all symbols
    }


def test_summary_abbreviates_long_symbol_lists() -> None:
    feed = Feed(symbols=["AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT", "EEEUSDT"])
    summary = status_of(feed, dict.fromkeys(feed.symbols))["summary"]
    assert summary == {"symbols": "AAAUSDT,BBBUSDT,CCCUSDT +2", "synced": "0/5"}


def test_conditions_ready_when_every_symbol_is_synced() -> None:
    feed = Feed(symbols=["BTCUSDT"])
    found = conditions(status_of(feed, {"BTCUSDT": latest("BTCUSDT", 1.0)}, generation=3))
    assert found["Ready"]["status"] == "True"
    assert found["Ready"]["observedGeneration"] == 3
    assert found["Degraded"]["status"] == "False"


def test_conditions_degraded_reason_is_the_worst_state_and_names_the_symbols() -> None:
    feed = Feed(symbols=["AAAUSDT", "BBBUSDT", "CCCUSDT"])
    stale = latest("AAAUSDT", 1.0, age_s=STALE_S * 2)
    resyncing = latest("BBBUSDT", 1.0, method="mid")
    found = conditions(status_of(feed, {"AAAUSDT": stale, "BBBUSDT": resyncing, "CCCUSDT": None}))
    assert found["Ready"]["status"] == "False"
    assert found["Degraded"]["status"] == "True"
    assert found["Degraded"]["reason"] == "NotSynced"
    assert found["Degraded"]["message"] == "NotSynced: CCCUSDT; Resyncing: BBBUSDT; Stale: AAAUSDT"

    found = conditions(status_of(feed, {"AAAUSDT": stale, "BBBUSDT": resyncing, "CCCUSDT": stale}))
    assert found["Degraded"]["reason"] == "Resyncing"
    found = conditions(status_of(feed, {"AAAUSDT": stale, "BBBUSDT": stale, "CCCUSDT": stale}))
    assert found["Degraded"]["reason"] == "Stale"


def test_conditions_of_a_disabled_feed() -> None:
    feed = Feed(symbols=["BTCUSDT"], enabled=False)
    found = conditions(status_of(feed, {"BTCUSDT": None}))
    assert (found["Ready"]["status"], found["Ready"]["reason"]) == ("False", "Disabled")
    assert found["Degraded"]["status"] == "False"


def test_condition_transition_time_moves_only_when_its_status_flips() -> None:
    feed = Feed(symbols=["BTCUSDT"])
    earlier = [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-03-01T10:00:00Z"},
        {"type": "Degraded", "status": "True", "lastTransitionTime": "2026-03-01T10:00:00Z"},
    ]
    found = conditions(
        status_of(feed, {"BTCUSDT": latest("BTCUSDT", 1.0)}, previous_conditions=earlier)
    )
    assert found["Ready"]["lastTransitionTime"] == "2026-03-01T10:00:00Z"
    assert found["Degraded"]["lastTransitionTime"] == "2026-03-01T12:00:00Z"


def test_format_price_is_a_short_decimal() -> None:
    assert format_price(65000.0) == "65000"
    assert format_price(0.00001234) == "0.00001234"
    assert format_price(1.5e-9) == "0"
    assert format_price(3200.123456789) == "3200.12345679"


def test_format_time_is_rfc3339_utc() -> None:
    assert format_time(NOW_MS + 999) == "2026-03-01T12:00:00Z"


def test_status_shows_the_market_alerts_firing_per_symbol_and_their_count() -> None:
    feed = Feed(symbols=["AAAUSDT", "BBBUSDT"])
    values = {
        "AAAUSDT": latest("AAAUSDT", 100.0, alerts=["above", "fast-move"]),
        "BBBUSDT": latest("BBBUSDT", 50.0),
    }
    status = status_of(feed, values)
    entries = {entry["symbol"]: entry for entry in status["symbols"]}
    assert entries["AAAUSDT"]["alerts"] == ["above", "fast-move"]
    assert "alerts" not in entries["BBBUSDT"]
    assert status["summary"]["alertsFiring"] == 2
    assert "alertsFiring" not in status_of(feed, {"AAAUSDT": None, "BBBUSDT": None})["summary"]
