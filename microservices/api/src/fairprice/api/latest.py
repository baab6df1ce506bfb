"""The latest value of each symbol, from the NATS KV bucket ``latest`` (the converter's).

Errors::

    TransientError
    └── NatsUnavailableError   not connected, timeout, no JetStream: the API answers 503

A symbol is *known* when the bucket holds a value for it: a converter has priced it. The API
never creates the bucket (its owner, the converter, chooses its settings); until it exists no
symbol is known.
"""

from __future__ import annotations

from nats.js.kv import KeyValue

from fairprice.common.broker_errors import broker_errors
from fairprice.common.bus import Bus
from fairprice.common.errors import BrokerError, InvalidMessageError, NotFoundError, TransientError
from fairprice.common.kv import Bucket, latest_key, snapshot
from fairprice.common.logs import get_logger
from fairprice.common.messages import Latest, decode

__all__ = ["LatestReader", "NatsUnavailableError"]

log = get_logger(__name__)


class NatsUnavailableError(TransientError):
    """NATS (or its JetStream) did not answer."""


class LatestReader:
    def __init__(self, bus: Bus, *, timeout_s: float = 2.0) -> None:
        self._bus = bus
        self._timeout_s = timeout_s
        self._kv: KeyValue | None = None

    async def get(self, exchange: str, symbol: str) -> Latest | None:
        """The symbol's latest value, ``None`` when it is not known."""
        kv = await self._bucket()
        if kv is None:
            return None
        try:
            with broker_errors("latest get"):
                entry = await kv.get(latest_key(exchange, symbol))
        except NotFoundError:
            return None
        except BrokerError as exc:
            raise NatsUnavailableError(f"nats: {exc}") from exc
        return _decode(entry.value or b"")

    async def all(self) -> list[Latest]:
        """Every known symbol's latest value, sorted by exchange and symbol."""
        if await self._bucket() is None:
            return []
        try:
            with broker_errors("latest snapshot"):
                entries = await snapshot(self._bus, Bucket.LATEST, idle_s=self._timeout_s)
        except BrokerError as exc:
            raise NatsUnavailableError(f"nats: {exc}") from exc
        values = [v for v in (_decode(data) for data in entries.values()) if v is not None]
        return sorted(values, key=lambda v: (v.exchange, v.symbol))

    async def _bucket(self) -> KeyValue | None:
        if not self._bus.nc.is_connected:
            raise NatsUnavailableError("nats is not connected")
        if self._kv is None:
            try:
                with broker_errors("latest bucket"):
                    self._kv = await self._bus.js.key_value(Bucket.LATEST.value)
            except NotFoundError:
                return None
            except BrokerError as exc:
                raise NatsUnavailableError(f"nats: {exc}") from exc
        return self._kv


def _decode(data: bytes) -> Latest | None:
    try:
        return decode(data, Latest)
    except InvalidMessageError as exc:
        log.warning("ignoring invalid latest entry", error=str(exc))
        return None
