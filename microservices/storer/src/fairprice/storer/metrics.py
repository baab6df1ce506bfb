"""The storer's Prometheus metrics (registered on the registry passed to ``run``).

Label values come from small fixed sets: ``stream`` (books, prices, signals, candles,
alerts), ``measurement`` (the six of the schema), ``kind`` (``InfluxUnavailableError.kind``),
``reason`` (``invalid``: not decodable or not encodable; ``rejected``: InfluxDB refused it),
``outcome`` (``stored``, ``thinned``, ``dead_letter``).
"""

from __future__ import annotations

from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from fairprice.storer.influx import UnavailableKind

__all__ = ["StorerMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Fine below a second, where the 500 ms end-to-end target lies (bench/end_to_end.py reads its
# percentiles from these buckets), coarse above for backlogs after an outage.
_E2E_BUCKETS = (
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.75,
    1,
    1.5,
    2.5,
    5,
    10,
    30,
    60,
    300,
    1800,
)
_STREAMS = ("books", "prices", "signals", "candles", "alerts")
_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000)


class StorerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.points_written = Counter(
            "fairprice_storer_points_written_total",
            "Points InfluxDB accepted, by measurement",
            ["measurement"],
            registry=registry,
        )
        self.messages = Counter(
            "fairprice_storer_messages_total",
            "Messages acked to JetStream, by stream and outcome",
            ["stream", "outcome"],
            registry=registry,
        )
        self.batch_points = Histogram(
            "fairprice_storer_batch_points",
            "Points per InfluxDB write request",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.write_latency = Histogram(
            "fairprice_storer_write_latency_seconds",
            "Duration of a successful InfluxDB write request",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.write_errors = Counter(
            "fairprice_storer_write_errors_total",
            "InfluxDB writes that failed and are retried, by kind",
            ["kind"],
            registry=registry,
        )
        for kind in get_args(UnavailableKind):  # at 0 from the start: increase() sees the first
            self.write_errors.labels(kind)
        self.write_retries = Counter(
            "fairprice_storer_write_retries_total",
            "InfluxDB writes retried after a backoff",
            registry=registry,
        )
        self.rejected_writes = Counter(
            "fairprice_storer_rejected_writes_total",
            "InfluxDB writes refused for bad points (each one bisected)",
            registry=registry,
        )
        self.dead_letters = Counter(
            "fairprice_storer_dead_letters_total",
            "Messages sent to the dead-letter subject, by stream and reason",
            ["stream", "reason"],
            registry=registry,
        )
        # Every series exists from the start at 0, so rate() and alerts see the first one.
        for stream in _STREAMS:
            for reason in ("invalid", "rejected"):
                self.dead_letters.labels(stream, reason)
        self.messages_lost = Counter(
            "fairprice_storer_messages_lost_total",
            "Messages the stream discarded (max_bytes/max_age) before they were stored, by stream",
            ["stream"],
            registry=registry,
        )
        for stream in _STREAMS:
            self.messages_lost.labels(stream)
        self.alertmanager_posts = Counter(
            "fairprice_storer_alertmanager_alerts_total",
            "Market alerts posted to Alertmanager, by outcome (accepted, retried, refused)",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("accepted", "retried", "refused"):
            self.alertmanager_posts.labels(outcome)
        self.consumer_lag = Gauge(
            "fairprice_storer_consumer_lag_messages",
            "Messages in the stream not yet delivered to the storer's consumer",
            ["stream"],
            registry=registry,
        )
        self.end_to_end_latency = Histogram(
            "fairprice_storer_end_to_end_latency_seconds",
            "Exchange event time to InfluxDB's acknowledgement of the point",
            ["stream"],
            buckets=_E2E_BUCKETS,
            registry=registry,
        )
