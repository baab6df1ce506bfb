"""The simulator's prometheus metrics, on a registry passed in (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["SimulatorMetrics"]


class SimulatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.connections = Gauge(
            "fairprice_simulator_connections", "Open WebSocket connections", registry=registry
        )
        self.active_symbols = Gauge(
            "fairprice_simulator_active_symbols",
            "Symbols whose books are moving",
            registry=registry,
        )
        self.market_events = Counter(
            "fairprice_simulator_market_events_total",
            "Book changes generated (one per tick of an active symbol)",
            registry=registry,
        )
        self.frames_sent = Counter(
            "fairprice_simulator_frames_sent_total",
            "WebSocket frames sent to clients",
            registry=registry,
        )
        self.rest_requests = Counter(
            "fairprice_simulator_rest_requests_total",
            "REST requests by endpoint and answered status",
            ["endpoint", "status"],
            registry=registry,
        )
        self.weight_used = Counter(
            "fairprice_simulator_weight_used_total",
            "REST request weight charged to clients",
            registry=registry,
        )
        self.disconnects = Counter(
            "fairprice_simulator_disconnects_total",
            "Connections the simulator closed, by reason",
            ["reason"],
            registry=registry,
        )
        self.faults = Counter(
            "fairprice_simulator_faults_injected_total",
            "Faults injected, by kind",
            ["kind"],
            registry=registry,
        )
