"""The NATS connection and the JetStream streams every service relies on.

``connect_bus`` connects (retrying until the broker answers or ``stop`` is set), keeps
reconnecting forever, logs every state change, flips the ``nats`` readiness condition, and
drains the connection on exit so nothing published or acked is lost at shutdown. A server that
refuses the credentials (``[nats] user``/``password``), or whose certificate does not verify
(``[nats] tls_ca_file``), is a ``FatalError`` naming the setting, not an outage to wait out.
``ensure_streams`` creates (and, for a stream's owner, updates) the streams idempotently.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext, api
from nats.js.manager import JetStreamManager

from fairprice.common.errors import FatalError, StoppedError, TransientError
from fairprice.common.health import Readiness
from fairprice.common.logs import get_logger
from fairprice.common.nats_permissions import inbox_prefix
from fairprice.common.retry import Backoff
from fairprice.common.settings import NatsSettings, StreamLimits, StreamsSettings
from fairprice.common.subjects import Stream, books_partition_transform

__all__ = ["Bus", "connect_bus", "ensure_stream", "ensure_streams", "stream_config"]

log = get_logger(__name__)

# nats-server answers "stream name already in use with a different configuration" with this
# code; the stream exists and is then updated in place.
_STREAM_NAME_IN_USE = 10058


@dataclass(frozen=True)
class Bus:
    """A connected client and its JetStream contexts."""

    nc: NATS
    js: JetStreamContext
    jsm: JetStreamManager


@contextlib.asynccontextmanager
async def connect_bus(
    settings: NatsSettings,
    *,
    name: str,
    readiness: Readiness | None = None,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[Bus]:
    """Connect to NATS; yields a ``Bus``; drains the connection when the block exits."""

    closing = False
    # The server refused our credentials, or its certificate did not verify, before we were
    # ever connected: a setting to fix, not an outage to wait out (nats-py retries forever).
    refused = _Refusal()

    async def disconnected() -> None:
        if closing:
            return  # our own drain or close, not an outage
        log.warning("nats disconnected")
        if readiness:
            readiness.set("nats", False)

    async def reconnected() -> None:
        log.info(
            "nats reconnected", server=str(nc.connected_url.netloc if nc.connected_url else "")
        )
        if readiness:
            readiness.set("nats", True)

    async def error(exc: Exception) -> None:
        log.warning("nats error", error=str(exc) or type(exc).__name__)
        # nats-py says it with AuthorizationError, or while connecting with a plain Error.
        if isinstance(exc, nats.errors.AuthorizationError) or _AUTHORIZATION in str(exc):
            refused.set(
                f"NATS at {settings.servers} refused the credentials: check [nats] user and "
                "password (FAIRPRICE_NATS__USER, FAIRPRICE_NATS__PASSWORD)"
            )
        elif isinstance(exc, ssl.SSLCertVerificationError):
            refused.set(
                f"the certificate of NATS at {settings.servers} did not verify "
                f"({exc.verify_message}): check [nats] tls_ca_file "
                "(FAIRPRICE_NATS__TLS_CA_FILE) and the server's name"
            )

    options: dict[str, Any] = {
        "servers": settings.servers,
        "name": name,
        "connect_timeout": settings.connect_timeout_s,
        "reconnect_time_wait": settings.reconnect_wait_s,
        "max_reconnect_attempts": settings.max_reconnect_attempts,
        "disconnected_cb": disconnected,
        "reconnected_cb": reconnected,
        "error_cb": error,
        # Keep publishing into the client's buffer while reconnecting (8 MiB), instead of
        # failing every publish during a broker restart.
        "pending_size": 8 * 1024 * 1024,
        # Well inside Kubernetes' default 30 s grace period.
        "drain_timeout": 10,
    }
    if settings.user:
        options["user"] = settings.user
        # Replies and deliveries under the user's own prefix, the only inbox its NATS
        # permissions let it read (fairprice.common.nats_permissions).
        options["inbox_prefix"] = inbox_prefix(settings.user)
    if settings.password:
        options["password"] = settings.password.get_secret_value()
    if settings.token:
        options["token"] = settings.token.get_secret_value()
    if settings.creds_file:
        options["user_credentials"] = str(settings.creds_file)
    if settings.tls_ca_file:
        # Verifies the server's certificate against this CA, and its name against the URL's.
        options["tls"] = ssl.create_default_context(cafile=str(settings.tls_ca_file))

    nc = await _connect_with_retry(options, settings, stop, refused)
    if readiness:
        readiness.set("nats", True)
    log.info("nats connected", servers=settings.servers)
    try:
        yield Bus(nc=nc, js=nc.jetstream(), jsm=nc.jsm())
    finally:
        if readiness:
            readiness.set("nats", False)
        closing = True
        # drain() flushes what we published and acked; on a connection that is down there is
        # nothing to flush, and close() ends the client's tasks (errors of a dead socket are
        # expected there).
        with contextlib.suppress(nats.errors.Error, OSError, TimeoutError):
            if nc.is_connected:
                await nc.drain()
            if not nc.is_closed:
                await nc.close()
        log.info("nats closed")


_CONNECT_MAX_S = 10.0
_AUTHORIZATION = "Authorization Violation"
_UNREACHABLE = (nats.errors.NoServersError, OSError, TimeoutError)


async def _connect_with_retry(
    options: dict[str, Any],
    settings: NatsSettings,
    stop: asyncio.Event | None,
    refused: _Refusal,
) -> NATS:
    async def waiting(exc: BaseException, attempt: int, delay: float) -> None:
        log.warning(
            "waiting for nats",
            servers=settings.servers,
            attempt=attempt + 1,
            error=str(exc),
            retry_in_s=round(delay, 2),
        )

    limit = settings.max_reconnect_attempts
    try:
        return await Backoff(settings.reconnect_wait_s, _CONNECT_MAX_S).retry(
            lambda: _unless_stopped(nats.connect(**options, allow_reconnect=True), stop, refused),
            stop=stop,
            what="NATS was reachable",
            transient=_UNREACHABLE,
            on_retry=waiting,
            attempts=None if limit == -1 else limit + 1,
        )
    except _UNREACHABLE as exc:
        raise TransientError(f"cannot connect to NATS at {settings.servers}: {exc}") from exc


async def _unless_stopped(
    connecting: Coroutine[Any, Any, NATS],
    stop: asyncio.Event | None,
    refused: _Refusal,
) -> NATS:
    """``connecting``, abandoned when ``stop`` is set first, or ``FatalError`` when the server
    refuses the credentials. With ``max_reconnect_attempts=-1`` nats-py retries a first
    connection forever inside ``nats.connect``: without this race, a service told to stop
    while the broker is unreachable would never return, nor one with a wrong password."""
    attempt = asyncio.ensure_future(connecting)
    waits = {asyncio.ensure_future(refused.event.wait())}
    if stop is not None:
        waits.add(asyncio.ensure_future(stop.wait()))
    try:
        await asyncio.wait({attempt, *waits}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # our caller is cancelled: so is the attempt
        attempt.cancel()
        raise
    finally:
        for wait in waits:
            wait.cancel()
    if attempt.done():
        if refused.reason and (attempt.cancelled() or attempt.exception() is not None):
            raise FatalError(refused.reason)
        return attempt.result()
    # Cancel until it ends: on Python 3.11 a refused connection that completes as the
    # cancellation arrives makes asyncio.wait_for (inside nats-py) swallow it, and nats-py
    # then goes on retrying.
    while not attempt.done():
        attempt.cancel()
        await asyncio.wait({attempt}, timeout=0.05)
    if not attempt.cancelled() and attempt.exception() is None:
        await attempt.result().close()  # it connected just as we stopped
    if refused.reason:
        raise FatalError(refused.reason)
    raise StoppedError("stopped before NATS was reachable")


class _Refusal:
    """Why the server can never accept this client (a setting to fix), once it says so."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        self.reason = reason
        self.event.set()


def stream_config(stream: Stream, settings: StreamsSettings) -> api.StreamConfig:
    """The JetStream configuration of ``stream`` from settings."""
    limits: StreamLimits = getattr(settings, stream.prefix)
    transform = None
    if stream is Stream.BOOKS:
        source, destination = books_partition_transform(settings.partitions)
        transform = api.SubjectTransform(src=source, dest=destination)
    return api.StreamConfig(
        name=stream.value,
        subjects=[stream.wildcard],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE if settings.storage == "file" else api.StorageType.MEMORY,
        max_age=limits.max_age_s,
        max_bytes=limits.max_bytes,
        discard=api.DiscardPolicy.OLD,
        # The server refuses a duplicate window longer than the stream keeps messages.
        duplicate_window=min(settings.duplicate_window_s, limits.max_age_s),
        num_replicas=settings.replicas,
        subject_transform=transform,
    )


async def ensure_streams(
    jsm: JetStreamManager,
    settings: StreamsSettings,
    streams: tuple[Stream, ...] = tuple(Stream),
    *,
    update: bool = True,
) -> None:
    """Create each stream; ``update``: also update it in place when it exists with another
    configuration (the stream's owner, its writer, does; a reader only creates a missing one,
    see ``fairprice.common.nats_permissions``)."""
    for stream in streams:
        await ensure_stream(jsm, stream_config(stream, settings), update=update)


async def ensure_stream(
    jsm: JetStreamManager, config: api.StreamConfig, *, update: bool = True
) -> None:
    """Create one stream; ``update``: or update it in place when it exists with another
    configuration (else an existing stream is left as it is, with a warning when it differs).

    An existing stream is looked at first and left alone when it already says what ``config``
    says: nats-server 2.9 answers a repeated create of a stream that reserves most of the
    JetStream store with "insufficient storage resources" (it counts the stream twice), so
    the second service to start against a store sized to the streams (the chart's) would fail.
    """
    if config.name is None:
        raise ValueError("a stream configuration needs a name")
    try:
        existing = (await jsm.stream_info(config.name)).config
    except nats.js.errors.NotFoundError:
        try:
            await jsm.add_stream(config)
            return
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != _STREAM_NAME_IN_USE:
                raise
        existing = (await jsm.stream_info(config.name)).config
    if not _differs(existing, config):
        return
    if update:
        await jsm.update_stream(config)
        log.info("stream updated", stream=config.name)
    else:
        log.warning("stream differs from these settings; its owner updates it", stream=config.name)


_COMPARED = (
    "subjects",
    "retention",
    "storage",
    "max_age",
    "max_bytes",
    "discard",
    "duplicate_window",
    "num_replicas",
)


def _differs(existing: api.StreamConfig, wanted: api.StreamConfig) -> bool:
    return any(getattr(existing, f) != getattr(wanted, f) for f in _COMPARED)
