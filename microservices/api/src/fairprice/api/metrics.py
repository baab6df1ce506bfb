"""The API's Prometheus metrics (a registry per run, passed in), and the ASGI middleware that
counts requests by route template (a small fixed label set, never the raw path)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ApiMetrics", "RequestMetrics"]


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "fairprice_api_requests_total",
            "HTTP requests answered, by route template and status code",
            ["route", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "fairprice_api_request_seconds",
            "Time to answer a request (a stream: until its headers are sent)",
            ["route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.stream_clients = Gauge(
            "fairprice_api_stream_clients", "Open /v1/stream connections", registry=registry
        )
        self.stream_dropped = Counter(
            "fairprice_api_stream_dropped_total",
            "Stream clients dropped for falling behind the window",
            registry=registry,
        )
        self.stream_window = Gauge(
            "fairprice_api_stream_window_messages",
            "Messages held in the stream window (bounded by [api.stream] buffer)",
            registry=registry,
        )
        self.unavailable = Counter(
            "fairprice_api_unavailable_total",
            "Requests answered 503 because a dependency was down",
            ["dependency"],
            registry=registry,
        )


class RequestMetrics:
    """Pure ASGI (no per-request task, unlike Starlette's BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = scope.get("route")
                template = getattr(route, "path", "other")
                self._metrics.requests.labels(template, str(message["status"])).inc()
                self._metrics.request_seconds.labels(template).observe(
                    time.perf_counter() - started
                )
            await send(message)

        await self._app(scope, receive, send_counted)
