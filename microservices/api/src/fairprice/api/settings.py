"""The price API's settings: the ``[api]`` table plus the shared ``[nats]`` and ``[influx]``."""

from __future__ import annotations

from pydantic import Field, SecretStr

from fairprice.common.settings import HttpSettings, InfluxSettings, Section, ServiceSettings

__all__ = ["ApiSection", "ApiSettings", "StreamSettings"]


class StreamSettings(Section):
    """The live stream (``GET /v1/stream``): one shared window of recent messages per replica."""

    buffer: int = Field(default=100_000, ge=100)
    """Messages of PRICES and SIGNALS kept in memory: what a reconnecting client can resume
    from, and how far a slow client may fall behind before it is dropped."""
    resume_window_s: float = Field(default=60.0, ge=0)
    """At start-up the window is filled from this long ago, so a client that reconnects to a
    fresh replica (a rolling update) resumes without a gap."""
    max_symbols: int = Field(default=200, ge=1)
    """Symbols one connection may ask for."""
    send_timeout_s: float = Field(default=10.0, gt=0)
    """A client whose socket accepts nothing for this long is dropped."""
    ping_s: float = Field(default=15.0, gt=0)
    """An SSE comment this often keeps idle connections open through proxies."""


class ApiSection(Section):
    host: str = "0.0.0.0"
    port: int = Field(default=8000, ge=0, le=65535)
    """The API's own port (uvicorn); /healthz, /readyz and /metrics are on ``http.port``."""
    token: SecretStr | None = None
    """When set, every /v1 request needs ``Authorization: Bearer <token>`` (off by default)."""
    max_rows: int = Field(default=5000, ge=1)
    """Most rows one history request returns (``limit`` is capped at it); a cursor gives more."""
    default_rows: int = Field(default=500, ge=1)
    default_history_s: float = Field(default=86400.0, gt=0)
    """History requests without ``start`` begin this long before ``end``."""
    retry_after_s: int = Field(default=5, ge=1)
    """``Retry-After`` of a 503 (NATS or InfluxDB down)."""
    influx_ping_s: float = Field(default=5.0, gt=0)
    """How often /readyz checks that InfluxDB answers."""
    stream: StreamSettings = StreamSettings()
    http: HttpSettings = HttpSettings(port=8085)


class ApiSettings(ServiceSettings):
    api: ApiSection = ApiSection()
    influx: InfluxSettings = InfluxSettings()
