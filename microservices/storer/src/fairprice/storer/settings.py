"""The storer's settings: the ``[storer]`` table plus the shared ``[nats]`` and ``[influx]``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from fairprice.common.retry import Backoff
from fairprice.common.settings import HttpSettings, InfluxSettings, Section, ServiceSettings
from fairprice.common.subjects import Stream

__all__ = [
    "AlertmanagerSettings",
    "BooksSettings",
    "ConsumerNames",
    "ProvisioningSettings",
    "RetrySettings",
    "StorerSection",
    "StorerSettings",
]


class BooksSettings(Section):
    """How many order books reach InfluxDB (fair prices, signals and candles: always all)."""

    mode: Literal["full", "interval"] = "full"
    """``full``: every book; ``interval``: at most one book per symbol per ``interval_s``."""
    interval_s: float = Field(default=1.0, gt=0)


class ProvisioningSettings(Section):
    """InfluxDB's admin, used only at the storer's start-up to create the database, its
    retention policy and the users: the storer's own (``[influx] username``/``password``,
    WRITE on the database) and the readers' (Grafana, the price API, ``fairprice``: READ).
    Unset (no admin): the storer creates the database and policy with its own user, which
    then needs admin rights (InfluxDB without authentication, as in old local runs)."""

    admin_username: str | None = None
    admin_password: SecretStr | None = None
    reader_username: str = "reader"
    reader_password: SecretStr | None = None
    """The readers' user is created (or its password set) only when this is given."""


class ConsumerNames(Section):
    """Durable consumer names: every replica that uses the same names shares the work."""

    books: str = "storer-books"
    prices: str = "storer-prices"
    signals: str = "storer-signals"
    candles: str = "storer-candles"
    alerts: str = "storer-alerts"

    def of(self, stream: Stream) -> str:
        name: str = getattr(self, stream.prefix)
        return name


class RetrySettings(Section):
    """Backoff while InfluxDB (or NATS, for dead letters) is unavailable: the project's retry
    policy (``fairprice.common.retry``), full jitter under ``min(max_s, initial_s *
    multiplier**attempt)``."""

    initial_s: float = Field(default=0.2, gt=0)
    max_s: float = Field(default=10.0, gt=0)
    multiplier: float = Field(default=2.0, ge=1)

    def backoff(self) -> Backoff:
        return Backoff(self.initial_s, self.max_s, self.multiplier)


class AlertmanagerSettings(Section):
    """Where the storer delivers market alerts (the ALERTS stream): Alertmanager's v2 API."""

    url: str | None = None
    """e.g. ``http://alertmanager:9093``; ``None``: alerts are only stored in InfluxDB."""
    consumer: str = "alertmanager"
    """The durable consumer of ALERTS: a message is acked once Alertmanager accepted it."""
    hold_s: float = Field(default=86400.0, gt=0)
    """A firing alert's ``endsAt`` is this long after it fired, unless it resolves first
    (Alertmanager resolves an alert that is not sent again by its ``endsAt``)."""
    timeout_s: float = Field(default=5.0, gt=0)


class StorerSection(Section):
    batch_size: int = Field(default=5000, ge=1)
    """Messages per InfluxDB write (a fair price makes two points, every other message one)."""
    max_delay_s: float = Field(default=0.2, gt=0)
    """A batch is written when it is full or this long after its first message was asked for."""
    writes_in_flight: int = Field(default=2, ge=1, le=8)
    """InfluxDB writes per stream at once: with two, influxd ingests one batch while the
    response to the other travels and the next is encoded, instead of idling between them."""
    books: BooksSettings = BooksSettings()
    consumers: ConsumerNames = ConsumerNames()
    ack_wait_s: float = Field(default=60.0, gt=0)
    """JetStream redelivers a message not acked this long after delivery (to any replica)."""
    max_ack_pending: int = Field(default=20_000, ge=1)
    """Messages delivered and not yet acked per consumer: bounds the memory of every replica."""
    retry: RetrySettings = RetrySettings()
    alertmanager: AlertmanagerSettings = AlertmanagerSettings()
    influx_ping_s: float = Field(default=5.0, gt=0)
    """How often an idle storer checks that InfluxDB answers (for /readyz)."""
    deadletter_max_age_s: float = Field(default=14 * 86400, gt=0)
    """How long the DEADLETTER stream keeps a dead letter."""
    provisioning: ProvisioningSettings = ProvisioningSettings()
    http: HttpSettings = HttpSettings(port=8083)

    @field_validator("max_ack_pending")
    @classmethod
    def _batch_fits_ack_pending(cls, value: int, info: ValidationInfo) -> int:
        batch_size = info.data.get("batch_size")
        if batch_size is not None and value < batch_size:
            raise ValueError(
                f"must be at least batch_size ({batch_size}), or no batch could ever fill"
            )
        return value


class StorerSettings(ServiceSettings):
    storer: StorerSection = StorerSection()
    influx: InfluxSettings = InfluxSettings()
