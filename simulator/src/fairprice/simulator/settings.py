"""The simulator's settings: the ``[simulator]`` section of the shared config file.

Every key can be overridden by ``FAIRPRICE_SIMULATOR__<KEY>`` (``__`` for nested tables), e.g.
``FAIRPRICE_SIMULATOR__SEED=7`` or ``FAIRPRICE_SIMULATOR__FAULTS__DROP_RATE=0.01``.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from fairprice.common.settings import HttpSettings, Section, ServiceSettings

__all__ = ["FaultSettings", "MarketSettings", "SimulatorSection", "SimulatorSettings"]


class MarketSettings(Section):
    """The simulated market: which symbols exist and how their books move."""

    seed: int = 1
    """Same seed and same market settings: the same sequence of events for every symbol."""
    symbols: list[str] = ["BTCUSDT", "ETHUSDT", "BNBUSDT"]
    """Symbols that always exist (upper case, as Binance spells them)."""
    generated_symbols: int = Field(default=2000, ge=0)
    """How many more symbols to generate from ``symbol_pattern``."""
    symbol_pattern: str = "SIM{n:04d}USDT"
    """A ``str.format`` pattern with ``{n}`` (0, 1, 2, ...) for the generated symbols."""
    any_symbol: bool = False
    """Also serve every other well-formed symbol asked for (``SOLUSDT``, ``DOGEUSDT``, ...),
    its book made up from the seed like the others: an offline cluster then crawls whatever
    symbols its crawler and MarketFeeds name. False: only the symbols above exist and any
    other answers ``-1121 Invalid symbol.``, as Binance does."""
    tick_ms: float = Field(default=100.0, gt=0)
    """The book moves once per tick; ``@depth@100ms`` sends one event per tick (Binance: 100)."""
    slow_ticks: int = Field(default=10, ge=1)
    """Ticks per ``@depth`` / ``@depthN`` event (Binance: 1000 ms = 10 ticks of 100 ms)."""
    event_probability: float = Field(default=1.0, ge=0, le=1)
    """Chance that a tick changes the book at all (1.0: every tick is an event)."""
    levels_per_event: tuple[int, int] = (1, 12)
    """Inclusive range of price levels changed by one event."""
    updates_per_event: tuple[int, int] = (1, 6)
    """Inclusive range of update ids one event spans (``u - U + 1``)."""
    depth_levels: int = Field(default=1200, ge=20)
    """Price levels each side may hold (the book lives within this many ticks of its centre)."""
    fill_ratio: float = Field(default=0.9, gt=0, le=1)
    """Share of the ``depth_levels`` price slots each side that start filled."""
    delete_probability: float = Field(default=0.3, ge=0, le=1)
    """Chance that a changed level is deleted (quantity 0)."""
    move_probability: float = Field(default=0.2, ge=0, le=0.5)
    """Chance per tick that the centre moves one tick up, and the same chance down."""
    history_ticks: int = Field(default=600, ge=1)
    """Steps of undo history kept per symbol for ``true_book`` and stale snapshots
    (~240 bytes each: 600 steps = 1 minute at 100 ms, ~140 kB per symbol)."""
    idle_after_s: float = Field(default=30.0, gt=0)
    """A symbol nobody streams stops moving this long after its last REST or stream use."""

    @model_validator(mode="after")
    def _check_ranges(self) -> MarketSettings:
        for name in ("levels_per_event", "updates_per_event"):
            low, high = getattr(self, name)
            if not 1 <= low <= high:
                raise ValueError(f"{name} must be [low, high] with 1 <= low <= high")
        return self


class FaultSettings(Section):
    """Faults active from the start (the control API changes them at run time)."""

    drop_rate: float = Field(default=0.0, ge=0, le=1)
    """Chance that a diff event is not sent (a gap for the client)."""
    malformed_rate: float = Field(default=0.0, ge=0, le=1)
    """Chance per sent frame that an extra malformed JSON frame goes before it."""
    truncated_rate: float = Field(default=0.0, ge=0, le=1)
    """Chance per sent frame that it is cut short (its event is lost to the client)."""
    rest_delay_s: float = Field(default=0.0, ge=0)
    """Delay before every REST answer."""
    rest_error_rate: float = Field(default=0.0, ge=0, le=1)
    """Chance that a REST request answers ``rest_error_status``."""
    rest_error_status: int = Field(default=503, ge=500, le=599)


class SimulatorSection(Section):
    http: HttpSettings = HttpSettings(port=8085)
    """/healthz, /readyz, /metrics."""
    host: str = "0.0.0.0"
    """Where the exchange API (REST, WebSocket, /control) listens."""
    port: int = Field(default=8090, ge=0, le=65535)
    market: MarketSettings = MarketSettings()
    faults: FaultSettings = FaultSettings()
    weight_limit: int = Field(default=6000, ge=1)
    """REST request weight per client IP per window (Binance: 6000 a minute)."""
    weight_window_s: float = Field(default=60.0, gt=0)
    ban_base_s: float = Field(default=120.0, gt=0)
    """First 418 ban; each later ban of the same IP doubles (Binance: 2 minutes to 3 days)."""
    ban_max_s: float = Field(default=3 * 86400.0, gt=0)
    ping_interval_s: float = Field(default=20.0, gt=0)
    pong_timeout_s: float = Field(default=60.0, gt=0)
    max_streams: int = Field(default=1024, ge=1)
    """Streams per connection (Binance: 1024)."""
    max_incoming_per_s: int = Field(default=5, ge=1)
    """Incoming messages (text, ping, pong) per second before a disconnect (Binance: 5)."""
    connection_lifetime_s: float = Field(default=86400.0, gt=0)
    """Binance closes every connection after 24 hours."""
    send_buffer_frames: int = Field(default=200_000, ge=1)
    """A client this many frames behind is disconnected (a slow consumer)."""
    control_api: bool = True
    """Serve ``/control/*`` (faults and the true book) on the exchange port."""


class SimulatorSettings(ServiceSettings):
    simulator: SimulatorSection = SimulatorSection()
