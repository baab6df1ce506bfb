"""The crawler's Prometheus metrics (``fairprice_crawler_*``).

The per-event counters live as plain ints in the sync engine and stream pool (an attribute
increment costs nothing on the hot path) and are read by a collector at scrape time; only the
latencies are observed per published book.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from fairprice.crawler.budget import WeightBudget
from fairprice.crawler.progress import SyncProgress
from fairprice.crawler.streams import StreamPool
from fairprice.crawler.sync import RefreshOutcome, ResyncReason, SyncEngine

__all__ = ["CrawlerMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_E2E_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class CrawlerMetrics:
    """Registers the crawler's metrics in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self.snapshot_requests = Counter(
            "fairprice_crawler_snapshot_requests_total",
            "REST snapshot requests by outcome (ok, error, rate_limited)",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("ok", "error", "rate_limited"):
            self.snapshot_requests.labels(outcome)
        self.publish_latency = Histogram(
            "fairprice_crawler_publish_latency_seconds",
            "From receiving an event to handing its book to NATS",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.event_to_publish = Histogram(
            "fairprice_crawler_event_to_publish_seconds",
            "From the exchange's event time to handing the book to NATS (clock skew included)",
            buckets=_E2E_BUCKETS,
            registry=registry,
        )

    def collect_from(
        self, engine: SyncEngine, pool: StreamPool, budget: WeightBudget, progress: SyncProgress
    ) -> None:
        """Serve the counters and gauges that these objects keep as plain attributes."""
        self._registry.register(_Collector(engine, pool, budget, progress))


class _Collector(Collector):
    def __init__(
        self, engine: SyncEngine, pool: StreamPool, budget: WeightBudget, progress: SyncProgress
    ) -> None:
        self._engine = engine
        self._pool = pool
        self._budget = budget
        self._progress = progress

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        engine, pool, budget = self._engine, self._pool, self._budget
        counters = (
            ("events_applied", "Diff events applied to a book", engine.events_applied),
            (
                "events_dropped",
                "Diff events already in the book (older than the snapshot, or seen twice)",
                engine.events_dropped,
            ),
            ("books_published", "Books handed to NATS", engine.books_built),
            ("reconnects", "WebSocket reconnects after an unexpected close", pool.reconnects),
            (
                "handovers",
                "Planned connection handovers (24 h limit, serverShutdown)",
                pool.handovers,
            ),
            ("malformed_frames", "WebSocket frames that could not be parsed", pool.malformed),
            (
                "snapshot_weight",
                "Request weight spent: snapshots and the exchangeInfo",
                budget.spent_total,
            ),
            (
                "books_short",
                "Books published with fewer levels than depth on a side because the snapshot's "
                "window ends nearer (the known-correct levels only)",
                engine.books_short,
            ),
        )
        for name, doc, value in counters:
            yield CounterMetricFamily(f"fairprice_crawler_{name}", doc, value=value)
        resyncs = CounterMetricFamily(
            "fairprice_crawler_resyncs", "Snapshot (re)syncs by reason", labels=["reason"]
        )
        for reason in ResyncReason:
            resyncs.add_metric([reason.value], engine.resyncs.get(reason, 0))
        yield resyncs
        refreshes = CounterMetricFamily(
            "fairprice_crawler_refreshes",
            "Background book refreshes by outcome (corrected: the top levels were wrong)",
            labels=["outcome"],
        )
        for outcome in RefreshOutcome:
            refreshes.add_metric([outcome.value], engine.refreshes.get(outcome, 0))
        yield refreshes
        windows = CounterMetricFamily(
            "fairprice_crawler_window_snapshots",
            "Deeper snapshots taken because a side's known-correct levels ran thin, by limit",
            labels=["limit"],
        )
        for limit in self._engine.window.classes if self._engine.window else ():
            windows.add_metric([str(limit)], engine.rewindows.get(limit, 0))
        yield windows
        gauges: tuple[tuple[str, str, float], ...] = (
            ("symbols_owned", "Symbols this replica crawls", len(engine.symbols)),
            ("symbols_synced", "Owned symbols whose book is in sync", engine.synced_count),
            ("connections", "Open WebSocket connections", pool.connections),
            (
                "snapshot_weight_used",
                "Request weight used this minute (ours or the header's)",
                budget.used,
            ),
            ("weight_budget", "Request weight a minute the crawler may spend", budget.budget),
            (
                "sync_eta_seconds",
                "Estimated seconds until every owned symbol is synced (NaN: no estimate yet)",
                self._progress.eta_metric,
            ),
        )
        for name, doc, gauge in gauges:
            yield GaugeMetricFamily(f"fairprice_crawler_{name}", doc, value=gauge)
