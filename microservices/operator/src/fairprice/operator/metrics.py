"""The operator's prometheus metrics, on a registry passed in (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from fairprice.operator.status import SymbolState

__all__ = ["OperatorMetrics"]


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.feed_writes = Counter(
            "fairprice_operator_feed_writes_total",
            "Feeds written to (put) or removed from (delete) the feeds KV bucket.",
            ["op"],
            registry=registry,
        )
        self.status_refreshes = Counter(
            "fairprice_operator_status_refreshes_total",
            "MarketFeed status refreshes from the latest KV bucket, by whether it changed.",
            ["changed"],
            registry=registry,
        )
        self.errors = Counter(
            "fairprice_operator_errors_total",
            "Handler errors by kind: nats (retried), spec (invalid, not retried).",
            ["kind"],
            registry=registry,
        )
        self.symbols = Gauge(
            "fairprice_operator_symbols",
            "Symbols of the handled MarketFeeds by state at their last refresh.",
            ["state"],
            registry=registry,
        )
        for state in SymbolState:  # every state at 0 until the first refresh: alerts see it
            self.symbols.labels(state.value)
