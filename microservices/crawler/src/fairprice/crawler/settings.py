"""The crawler's settings: the ``[crawler]`` section of the shared config file.

Every key can be overridden by ``FAIRPRICE_CRAWLER__<KEY>``, e.g.
``FAIRPRICE_CRAWLER__SYMBOLS='["BTCUSDT"]'`` or ``FAIRPRICE_CRAWLER__HTTP__PORT=0``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from fairprice.common.settings import HttpSettings, Section, ServiceSettings

__all__ = ["CrawlerSection", "CrawlerSettings"]


class CrawlerSection(Section):
    http: HttpSettings = HttpSettings(port=8081)
    """/healthz, /readyz (every owned symbol synced), /metrics."""
    exchange: str = "binance"
    """The exchange adapter (``fairprice.crawler.adapters``): ``binance``, or ``sim`` for
    fairprice's simulator (Binance's wire format, books published as ``books.sim.*``)."""
    rest_url: str = "https://api.binance.com"
    """REST base URL (also e.g. https://data-api.binance.vision, or the simulator)."""
    ws_url: str = "wss://stream.binance.com:9443"
    """WebSocket base URL (also e.g. wss://data-stream.binance.vision, or the simulator)."""
    symbols: list[str] = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT"]
    """Symbols crawled with no operator; enabled feeds in the ``feeds`` KV bucket add more."""
    feeds_refresh_s: float = Field(default=5.0, gt=0)
    """How often the ``feeds`` bucket is re-read (symbols added or removed with no restart)."""
    depth: int = Field(default=20, ge=1, le=5000)
    """Levels per side in published books."""
    publish_every_event: bool = False
    """Publish after every applied event, not only those that changed the top ``depth``."""
    snapshot_limit: int | None = Field(default=None, ge=1, le=5000)
    """Levels per side of the first snapshot of a symbol (Binance weight 5/25/50/250 up to
    100/500/1000/5000). None: the smallest weight class holding ``window_margin`` times
    ``depth`` (depth 20: 100 levels, weight 5); set 1000 or 5000 to store deep books."""
    window_margin: float = Field(default=2.0, ge=1.0)
    """The first snapshot holds this many times ``depth`` levels (when ``snapshot_limit`` is
    not set)."""
    max_snapshot_limit: int = Field(default=1000, ge=1, le=5000)
    """The deepest snapshot a book whose window ran thin may ask for."""
    window_check: bool = True
    """Publish only the levels inside the snapshot's window and deepen thin windows
    (docs/crawler.md). False publishes every level held, as a plain snapshot + diff book
    does, which misses levels once the price walks past the window: for comparisons only."""
    weight_budget: int | None = Field(default=None, ge=1)
    """Request weight per minute the crawler may spend. None: the exchange's own limit
    (``exchangeInfo`` ``rateLimits`` REQUEST_WEIGHT, 6000 a minute on Binance) less
    ``weight_reserve``; a number caps it lower (other clients share the IP)."""
    weight_reserve: float = Field(default=0.1, ge=0.0, lt=1.0)
    """The share of the exchange's limit never spent: requests in flight, another client on
    the same IP and a clock a little off the exchange's minute stay below the limit."""
    snapshot_concurrency: int = Field(default=8, ge=1, le=32)
    snapshot_timeout_s: float = Field(default=10.0, gt=0)
    snapshot_retry_base_s: float = Field(default=1.0, gt=0)
    snapshot_retry_max_s: float = Field(default=60.0, gt=0)
    refresh_s: float = Field(default=3600.0, ge=0)
    """Check every book against a fresh snapshot once in this period (spread evenly over the
    symbols, within the weight budget), with no gap: a level beyond the snapshot's depth that
    never changed is otherwise unknown when the price reaches it. 0: never."""
    quiet_snapshot_s: float = Field(default=5.0, gt=0)
    """Fetch the snapshot of a symbol that has sent no event this long after it was added (an
    illiquid market's book may not change for minutes; it must still count as synced)."""
    buffer_limit: int = Field(default=10_000, ge=10)
    """Events buffered per symbol while its snapshot is on the way (oldest dropped first)."""
    redundancy: int = Field(default=1, ge=1)
    """Replicas that crawl and publish each symbol (2: hot standby, duplicates deduplicated)."""
    handoff_s: float = Field(default=20.0, ge=0)
    """Keep crawling a symbol that another replica took over (a replica joined, or this one
    is stopping) until every new owner says in its heartbeat that it has the symbol synced,
    for at most this long: no update is lost when replicas come and go gracefully. Within
    the crawler pod's termination grace period (30 s). 0: let go at once."""
    heartbeat_s: float = Field(default=1.0, gt=0)
    """Membership heartbeat period in the ``members`` KV bucket."""
    member_ttl_s: float = Field(default=5.0, gt=0)
    """A replica missing heartbeats this long is dead and its symbols move."""
    streams_per_connection: int = Field(default=1024, ge=1)
    """Capped at the exchange's limit (Binance: 1024)."""
    streams_per_message: int = Field(default=200, ge=1)
    """Streams per SUBSCRIBE/UNSUBSCRIBE message."""
    messages_per_second: float = Field(default=3.0, gt=0)
    """Method messages per second per connection (Binance disconnects past 5, pongs count)."""
    reconnect_base_s: float = Field(default=0.5, gt=0)
    """Reconnect backoff: full jitter, doubling from this up to ``reconnect_max_s``."""
    reconnect_max_s: float = Field(default=30.0, gt=0)
    connection_max_age_s: float | None = Field(default=None, gt=0)
    """Hand a connection over to a new one after this long (default: 15 min before the
    exchange's own limit, Binance 24 h)."""
    publish_max_in_flight: int = Field(default=10_000, ge=1)
    record: Path | None = None
    """Write the raw REST and WebSocket traffic to this directory (docs/crawler.md)."""

    @field_validator("symbols")
    @classmethod
    def _upper(cls, symbols: list[str]) -> list[str]:
        return sorted({symbol.strip().upper() for symbol in symbols if symbol.strip()})


class CrawlerSettings(ServiceSettings):
    crawler: CrawlerSection = CrawlerSection()
