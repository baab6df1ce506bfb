"""The InfluxDB HTTP write API, one code path for both of its shapes.

- ``api = "v1"``: ``POST /write?db=&rp=&precision=ms``, served by 1.x natively and by 2.x/3.x
  as their v1-compatible endpoint; auth by ``Authorization: Token <token>`` or by user and
  password (HTTP basic auth, so the password stays out of URLs and logs).
- ``api = "v2"``: ``POST /api/v2/write?org=&bucket=&precision=ms`` with ``Authorization: Token``.

Errors, drawn as the storer handles them::

    TransientError
    └── InfluxUnavailableError   5xx, timeout, refused connection, 401/403/404/429: retry
                                 with backoff, ack nothing (the points are not the problem)
    FairpriceError
    └── PointsRejectedError      400/413/422: some points of this body are bad (parse error,
                                 field type conflict, too large): bisect the batch

Configuration mistakes must never look like bad points (that would dead-letter everything):
1.x answers them with 404 (database) or 500 (retention policy), 2.x with 401/404, and the one
2.x answers with 400 (no org) is refused at start-up.

1.x writes the good points of a body even when it rejects others, so a retried half re-writes
some points: harmless, a point is keyed by series and timestamp and overwrites itself.
"""

from __future__ import annotations

from types import TracebackType
from typing import Literal

import httpx

from fairprice.common.errors import FairpriceError, SettingsError, TransientError
from fairprice.common.logs import get_logger
from fairprice.common.settings import InfluxSettings

__all__ = ["InfluxUnavailableError", "InfluxWriter", "PointsRejectedError", "UnavailableKind"]

log = get_logger(__name__)

UnavailableKind = Literal["server_error", "timeout", "connection", "auth", "not_found", "other"]
# Statuses that say "these points are bad": anything else in 4xx is about us or the server.
_REJECTED = frozenset({400, 413, 422})
_REASON_MAX = 1000
_TEXT = {"Content-Type": "text/plain; charset=utf-8"}


class InfluxUnavailableError(TransientError):
    """InfluxDB did not take the write for a reason unrelated to its points."""

    def __init__(self, message: str, *, kind: UnavailableKind) -> None:
        super().__init__(message)
        self.kind: UnavailableKind = kind


class PointsRejectedError(FairpriceError):
    """InfluxDB refused (some of) the points of a body; ``reason`` is its own explanation."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"influxdb rejected points ({status}): {reason}")
        self.status = status
        self.reason = reason


class InfluxWriter:
    """``async with InfluxWriter(settings) as influx: await influx.write(body)``."""

    def __init__(self, settings: InfluxSettings) -> None:
        self._settings = settings
        headers, auth = settings.credentials()
        if settings.api == "v2":
            if not settings.org or settings.token is None:
                # InfluxDB would answer 400 to every write, which reads as "bad points" and
                # would dead-letter everything: refuse to start instead.
                raise SettingsError(
                    "influx.org (env FAIRPRICE_INFLUX__ORG) and influx.token "
                    "(env FAIRPRICE_INFLUX__TOKEN) are required with influx.api = 'v2'"
                )
            self._path = "/api/v2/write"
            self._params = {
                "org": settings.org,
                "bucket": settings.bucket or settings.database,
                "precision": "ms",
            }
        else:
            self._path = "/write"
            self._params = {
                "db": settings.database,
                "rp": settings.retention_policy,
                "precision": "ms",
            }
        self._client = httpx.AsyncClient(
            base_url=settings.url,
            headers=headers,
            auth=auth,
            timeout=settings.timeout_s,
        )

    async def __aenter__(self) -> InfluxWriter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.aclose()

    async def write(self, body: bytes) -> None:
        """Write line protocol; raises ``InfluxUnavailableError`` or ``PointsRejectedError``."""
        response = await self._request(
            "POST", self._path, params=self._params, content=body, headers=_TEXT
        )
        if response.status_code == 204 or response.status_code == 200:
            return
        reason = _reason(response)
        if response.status_code in _REJECTED:
            raise PointsRejectedError(response.status_code, reason)
        kind = _kind_of(response.status_code)
        if "retention policy not found" in reason:  # 1.x answers 500 to this one
            kind = "not_found"
        raise InfluxUnavailableError(
            f"influxdb write failed ({response.status_code}): {reason}", kind=kind
        )

    async def ping(self) -> None:
        """Raise ``InfluxUnavailableError`` unless InfluxDB answers ``/ping``."""
        response = await self._request("GET", "/ping")
        if response.status_code >= 300:
            status = response.status_code
            raise InfluxUnavailableError(f"influxdb ping answered {status}", kind=_kind_of(status))

    async def ensure_database(self) -> None:
        """Create the database and make its retention policy the default, idempotently (1.x).

        With ``api = "v2"`` the bucket (and its retention) belongs to whoever runs InfluxDB
        2.x/3.x, and this does nothing.
        """
        if self._settings.api == "v2":
            return
        db = _quote_ident(self._settings.database)
        rp = _quote_ident(self._settings.retention_policy)
        duration = self._settings.retention_duration
        await self._query(f"CREATE DATABASE {db}")
        # CREATE is idempotent for an identical policy and refuses a changed one; then ALTER
        # brings the existing policy to the configured duration.
        error = await self._query(
            f"CREATE RETENTION POLICY {rp} ON {db} DURATION {duration} REPLICATION 1 DEFAULT",
            check=False,
        )
        if error:
            await self._query(f"ALTER RETENTION POLICY {rp} ON {db} DURATION {duration} DEFAULT")
        log.info(
            "influxdb database ready",
            database=self._settings.database,
            rp=self._settings.retention_policy,
        )

    async def ensure_user(self, name: str, password: str, privilege: str) -> None:
        """Create user ``name`` (or set its password: a rotated Secret) with ``privilege``
        (``READ`` or ``WRITE``) on the database, idempotently; needs an admin (1.x)."""
        user, db = _quote_ident(name), _quote_ident(self._settings.database)
        secret = "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"
        shown = f"CREATE USER {user} / SET PASSWORD FOR {user}"  # never the password
        if await self._query(
            f"CREATE USER {user} WITH PASSWORD {secret}", check=False, shown=shown
        ):
            await self._query(f"SET PASSWORD FOR {user} = {secret}", shown=shown)
        await self._query(f"GRANT {privilege} ON {db} TO {user}")
        log.info("influxdb user ready", user=name, privilege=privilege)

    async def _query(self, statement: str, *, check: bool = True, shown: str | None = None) -> str:
        """Run one InfluxQL statement; the error it reports ("" for none). ``shown``: what
        an error names instead of the statement (one that holds a password)."""
        response = await self._request("POST", "/query", data={"q": statement})
        shown = statement if shown is None else shown
        if response.status_code >= 400:
            raise InfluxUnavailableError(
                f"influxdb query {shown!r} failed ({response.status_code}): {_reason(response)}",
                kind=_kind_of(response.status_code),
            )
        results = response.json().get("results", [{}])
        error = str(results[0].get("error", "")) if results else ""
        if error and check:
            raise InfluxUnavailableError(f"influxdb query {shown!r} failed: {error}", kind="other")
        return error

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        try:
            return await self._client.request(
                method, path, params=params, content=content, data=data, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise InfluxUnavailableError(
                f"influxdb timed out after {self._settings.timeout_s}s", kind="timeout"
            ) from exc
        except httpx.TransportError as exc:
            raise InfluxUnavailableError(
                f"influxdb unreachable: {exc!r}", kind="connection"
            ) from exc


def _kind_of(status: int) -> UnavailableKind:
    if status >= 500:
        return "server_error"
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "not_found"
    return "other"


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
        # 1.x: {"error": ...}; 2.x: {"code": ..., "message": ...}
        reason = str(body.get("error") or body.get("message") or "") or response.text
    except (ValueError, AttributeError):
        reason = response.text
    return reason[:_REASON_MAX] or f"HTTP {response.status_code}"


def _quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
