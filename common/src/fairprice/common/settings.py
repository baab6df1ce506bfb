"""Settings: pydantic-settings from a TOML file, overridden by ``FAIRPRICE_*`` environment.

Sources, highest priority first: keyword arguments, environment variables
(``FAIRPRICE_<SECTION>__<KEY>``, nested with ``__``), then the TOML file named by
``$FAIRPRICE_CONFIG`` (else ``clusters_dev.toml`` in the working directory, when present).
Every section rejects unknown keys, and the file may hold only known sections, so a typo fails
at start-up instead of being silently ignored; so does every ``FAIRPRICE_*`` variable that
names no setting (``FAIRPRICE_CRAWLR__DEPTH``), and a list or table variable that is not JSON
(``FAIRPRICE_NATS__SERVERS='["nats://nats:4222"]'``, not ``nats://nats:4222``).
``load_settings`` raises ``SettingsError`` whose message has one line per bad setting, naming
it by its file key and its environment variable.
"""

from __future__ import annotations

import contextvars
import difflib
import json
import os
import re
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings import SettingsError as SourceError

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
        "api",
        "simulator",
        "kubernetes",
    }
)

NON_SETTING_VARIABLES = frozenset(
    {CONFIG_ENV, "FAIRPRICE_CLUSTER", "FAIRPRICE_RECORDINGS", "FAIRPRICE_SERVICE"}
)
"""``FAIRPRICE_*`` variables that are not settings: the config file, scripts/cluster.sh's
cluster kind, the tests' recordings folder, the service an image holds (dev.Dockerfile's
``FAIRPRICE_SERVICE``). Any other names a setting or is an
error."""

_SERVICE_LINK = re.compile(
    r"^FAIRPRICE_(?!.*__)[A-Z0-9_]+?_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?"
    r"|PORT(_\d+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$"
)
"""What Kubernetes puts in every container for each Service of its namespace
(``enableServiceLinks``): a release named ``fairprice`` has Services ``fairprice-nats``, ...,
hence ``FAIRPRICE_NATS_SERVICE_HOST``, ``FAIRPRICE_NATS_PORT_4222_TCP_ADDR``. Not settings
(those always have a ``__``), and not a reason to stop."""

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
    partitions: int = Field(default=16, ge=1, le=4096)
    """BOOKS stores each book under ``books.<partition>.<exchange>.<SYMBOL>``, the partition a
    hash of exchange and symbol computed by the server (the stream's subject transform);
    converter replicas own partitions and read only theirs. Changing it moves symbols (safe:
    they are rebuilt), and every service must see the same number."""
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
    tls_ca_file: Path | None = None
    """TLS to NATS: the CA (PEM) that signed the server's certificate, which the client then
    verifies (name and chain); unset: plain text, unless a server URL says ``tls://``."""
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

    def credentials(self) -> tuple[dict[str, str], tuple[str, str] | None]:
        """How every InfluxDB client authenticates: ``(headers, basic auth)``. A token goes in
        ``Authorization: Token ...``; else user and password as HTTP basic auth, so the
        password stays out of URLs and logs; else nothing."""
        if self.token is not None:
            return {"Authorization": f"Token {self.token.get_secret_value()}"}, None
        if self.username is not None:
            password = self.password.get_secret_value() if self.password else ""
            return {}, (self.username, password)
        return {}, None


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
    """Load ``cls`` from ``path`` (default: ``config_path()``), environment and ``overrides``
    (nested tables are merged into the file's and environment's).

    Raises ``SettingsError`` naming every bad setting by file key and environment variable,
    one line each.
    """
    path = path if path is not None else config_path()
    where = f"config file {path}" if path else "no config file"
    if path is not None:
        _check_file(path, where)
    problems = dict(_check_environment(cls, os.environ))
    token = _config_file.set(path)
    try:
        settings = cls(**overrides)
    except ValidationError as exc:
        for error in exc.errors():
            key, problem = _describe(cls, error)
            problems.setdefault(key, problem)
    except SourceError as exc:  # a variable the checks above do not foresee: still one line
        if not problems:
            raise SettingsError(f"invalid settings ({where}): {exc}") from None
    finally:
        _config_file.reset(token)
    if problems:
        raise SettingsError("\n".join(_line(where, *problem) for problem in problems.items()))
    return settings


def _line(where: str, key: str, problem: str) -> str:
    env = ENV_PREFIX + "__".join(part.upper() for part in key.split("."))
    return f"invalid setting {key} (env {env}; {where}): {problem}"


def _check_environment(cls: type[BaseModel], environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(key, problem)`` of every ``FAIRPRICE_*`` variable that names no setting of ``cls``
    (or of another service: a known section ``cls`` does not have), or holds a list or table
    that is not JSON."""
    problems = []
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in NON_SETTING_VARIABLES:
            continue
        if _SERVICE_LINK.match(name):
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        key = ".".join(path)
        if path[0] not in cls.model_fields:
            if path[0] not in KNOWN_SECTIONS:
                hint = _did_you_mean(path[0], KNOWN_SECTIONS)
                problems.append((key, f"unknown section{hint}"))
            continue
        model: type[BaseModel] | None = cls
        annotation: Any = None
        for part in path:
            if model is None or part not in model.model_fields:
                fields = frozenset(model.model_fields) if model is not None else frozenset()
                problems.append((key, f"unknown setting{_did_you_mean(part, fields)}"))
                break
            annotation = _unwrap_optional(model.model_fields[part].annotation)
            model = annotation if _is_model(annotation) else None
        else:
            if _is_complex(annotation):
                try:
                    json.loads(value)
                except ValueError:
                    table = _is_model(annotation) or get_origin(annotation) is dict
                    example = '{"key": "value"}' if table else '["a", "b"]'
                    problems.append((key, f"expected JSON such as {example}, got {value!r}"))
    return problems


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_complex(annotation: Any) -> bool:
    """Values pydantic-settings reads from the environment as JSON."""
    return _is_model(annotation) or get_origin(annotation) in (list, dict, set, frozenset, tuple)


def _check_file(path: Path, where: str) -> None:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read {where}: {exc}") from None
    unknown = sorted(set(data) - KNOWN_SECTIONS)
    if unknown:
        lines = [
            _line(where, key, f"unknown section{_did_you_mean(key, KNOWN_SECTIONS)}")
            for key in unknown
        ]
        raise SettingsError("\n".join(lines))


def _describe(cls: type[BaseModel], error: Any) -> tuple[str, str]:
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc)
    if error["type"] == "extra_forbidden":
        fields = _fields_at(cls, loc[:-1])
        return key, f"unknown setting{_did_you_mean(loc[-1], fields)}"
    shown = "" if error["type"] == "missing" else f", got {error.get('input')!r}"
    return key, f"{error['msg']}{shown}"


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
