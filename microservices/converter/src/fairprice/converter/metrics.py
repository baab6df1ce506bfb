"""The converter's Prometheus metrics, registered in the registry the service is given."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from fairprice.converter.fair_price import Skip

__all__ = ["ConverterMetrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
_REBUILD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ConverterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        prefix = "fairprice_converter"
        self.books = Counter(
            f"{prefix}_books_total",
            "Books of owned symbols processed (live and replayed)",
            registry=registry,
        )
        self.received = Counter(
            f"{prefix}_books_received_total",
            "Live books delivered to this replica (only its partitions' books are sent to it)",
            registry=registry,
        )
        self.skipped = Counter(
            f"{prefix}_books_skipped_total",
            "Books that gave no price, by reason",
            ["reason"],
            registry=registry,
        )
        for reason in Skip:
            self.skipped.labels(reason.value)
        self.prices = Counter(f"{prefix}_prices_total", "Prices published", registry=registry)
        self.signals = Counter(
            f"{prefix}_signals_total", "Signals published", ["action"], registry=registry
        )
        self.candles = Counter(f"{prefix}_candles_total", "Candles published", registry=registry)
        self.alerts = Counter(
            f"{prefix}_alert_events_total",
            "Market alert firings and resolutions published",
            registry=registry,
        )
        self.owned_partitions = Gauge(
            f"{prefix}_owned_partitions", "Partitions this replica owns", registry=registry
        )
        self.owned_symbols = Gauge(
            f"{prefix}_owned_symbols", "Symbols this replica owns", registry=registry
        )
        self.rebuilding = Gauge(
            f"{prefix}_rebuilding_symbols",
            "Owned symbols whose state is being rebuilt",
            registry=registry,
        )
        self.rebuilds = Counter(
            f"{prefix}_rebuilds_total", "Symbol state rebuilds (takeovers)", registry=registry
        )
        self.rebuild_seconds = Histogram(
            f"{prefix}_rebuild_seconds",
            "Time to rebuild one symbol's state from BOOKS",
            buckets=_REBUILD_BUCKETS,
            registry=registry,
        )
        self.latency = Histogram(
            f"{prefix}_processing_latency_seconds",
            "Crawler receive time to the converter's publish, sampled once per batch",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.pending = Gauge(
            f"{prefix}_consumer_pending_messages",
            "BOOKS messages not yet delivered to this replica",
            registry=registry,
        )
        self.invalid = Counter(
            f"{prefix}_invalid_messages_total",
            "BOOKS messages that did not decode (dropped)",
            registry=registry,
        )
