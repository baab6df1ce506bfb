"""Settings: pydantic-settings from a TOML file, overridden by ``FAIRPRICE_*`` environment.

Sources, highest priority first: keyword arguments, environment variables
(``FAIRPRICE_<SECTION>__<KEY>``, nested with ``__``), then the TOML file named by
``$FAIRPRICE_CONFIG`` (else ``clusters_dev.toml`` in the working directory, when present).
Every section rejects unknown keys, and the file may hold only known sections, so a typo fails
at start-up instead of being silently ignored. ``load_settings`` raises ``SettingsError`` whose
message names each bad setting by its file key and its environment variable.
"""

from __future__ import annotations

import contextvars
import difflib
import os
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from fairprice.common.errors import SettingsError

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "ENV_PREFIX",
    "HttpSettings",
    "InfluxSettings",
    "LogSettings",
    "NatsSettings",
    "Section",
    "ServiceSettings",
    "StreamLimits",
    "StreamsSettings",
    "load_settings",
]

ENV_PREFIX = "FAIRPRICE_"
CONFIG_ENV = "FAIRPRICE_CONFIG"
DEFAULT_CONFIG = Path("clusters_dev.toml")

# Top-level tables a config file may hold. One file configures every service, so a service
# ignores the others' sections, but a name outside this set is a typo and fails.
KNOWN_SECTIONS = frozenset(
    {
        "nats",
        "influx",
        "log",
        "crawler",
        "converter",
        "storer",
        "operator",
        "simulator",
        "kubernetes",
    }
)

_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "fairprice_config_file", default=None
)


class Section(BaseModel):
    """A settings table: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpSettings(Section):
    """The service's HTTP port for /healthz, /readyz and /metrics."""

    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)


class LogSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"
    """``auto``: readable on a terminal, JSON lines otherwise (containers, files)."""


class StreamLimits(Section):
    max_age_s: float = Field(gt=0)
    max_bytes: int = Field(gt=0)


class StreamsSettings(Section):
    """JetStream stream configuration, applied idempotently at start-up."""

    replicas: int = Field(default=1, ge=1, le=5)
    storage: Literal["file", "memory"] = "file"
    duplicate_window_s: float = Field(default=120.0, gt=0)
    books: StreamLimits = StreamLimits(max_age_s=3600, max_bytes=2 * 1024**3)
    prices: StreamLimits = StreamLimits(max_age_s=86400, max_bytes=1024**3)
    signals: StreamLimits = StreamLimits(max_age_s=7 * 86400, max_bytes=256 * 1024**2)
    candles: StreamLimits = StreamLimits(max_age_s=7 * 86400, max_bytes=256 * 1024**2)
    alerts: StreamLimits = StreamLimits(max_age_s=7 * 86400, max_bytes=64 * 1024**2)


class NatsSettings(Section):
    servers: list[str] = ["nats://127.0.0.1:4222"]
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    creds_file: Path | None = None
    connect_timeout_s: float = Field(default=5.0, gt=0)
    reconnect_wait_s: float = Field(default=2.0, gt=0)
    max_reconnect_attempts: int = Field(default=-1, ge=-1)
    """-1: reconnect forever (a broker restart must not kill the services)."""
    streams: StreamsSettings = StreamsSettings()


class InfluxSettings(Section):
    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v1"
    """``v1``: ``POST /write`` (InfluxDB 1.x natively, 2.x/3.x compatibility endpoint);
    ``v2``: ``POST /api/v2/write`` with org, bucket and token."""
    database: str = "fair_price"
    retention_policy: str = "fairprice"
    retention_duration: str = "30d"
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    org: str | None = None
    bucket: str | None = None
    timeout_s: float = Field(default=10.0, gt=0)


class ServiceSettings(BaseSettings):
    """Base of each service's settings: the shared sections plus the service's own."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
    )

    nats: NatsSettings = NatsSettings()
    log: LogSettings = LogSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _config_file.get()
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if path is not None:
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=path),)
        return sources


S = TypeVar("S", bound=ServiceSettings)


def config_path(environ: dict[str, str] | None = None) -> Path | None:
    """The config file to read: ``$FAIRPRICE_CONFIG``, else ./clusters_dev.toml if present."""
    env = os.environ if environ is None else environ
    named = env.get(CONFIG_ENV)
    if named:
        path = Path(named)
        if not path.is_file():
            raise SettingsError(f"{CONFIG_ENV}={named}: no such file")
        return path
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def load_settings(cls: type[S], path: Path | None = None, **overrides: Any) -> S:
    """Load ``cls`` from ``path`` (default: ``config_path()``), environment and ``overrides``.

    Raises ``SettingsError`` naming every bad setting by file key and environment variable.
    """
    path = path if path is not None else config_path()
    where = f"config file {path}" if path else "no config file"
    if path is not None:
        _check_file(path, where)
    token = _config_file.set(path)
    try:
        return cls(**overrides)
    except ValidationError as exc:
        lines = [_describe(cls, error) for error in exc.errors()]
        raise SettingsError(f"invalid settings ({where}):\n" + "\n".join(lines)) from None
    finally:
        _config_file.reset(token)


def _check_file(path: Path, where: str) -> None:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read {where}: {exc}") from None
    unknown = sorted(set(data) - KNOWN_SECTIONS)
    if unknown:
        lines = [
            f"  - {key}: unknown section{_did_you_mean(key, KNOWN_SECTIONS)}" for key in unknown
        ]
        raise SettingsError(f"invalid settings ({where}):\n" + "\n".join(lines))


def _describe(cls: type[BaseModel], error: Any) -> str:
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc)
    env = ENV_PREFIX + "__".join(part.upper() for part in loc)
    if error["type"] == "extra_forbidden":
        fields = _fields_at(cls, loc[:-1])
        return f"  - {key} (env {env}): unknown setting{_did_you_mean(loc[-1], fields)}"
    shown = "" if error["type"] == "missing" else f", got {error.get('input')!r}"
    return f"  - {key} (env {env}): {error['msg']}{shown}"


def _fields_at(model: type[BaseModel], path: list[str]) -> frozenset[str]:
    """The field names of the section that ``path`` leads to, for a did-you-mean hint."""
    for name in path:
        field = model.model_fields.get(name)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return frozenset()
        model = annotation
    return frozenset(model.model_fields)


def _did_you_mean(word: str, choices: frozenset[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
