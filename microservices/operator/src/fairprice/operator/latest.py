"""Reading the pipeline's latest values per symbol from the ``latest`` KV bucket.

The converter keeps ``<exchange>.<SYMBOL>`` -> its latest fair price, SMA values and last
signal. The operator reads one key per symbol of a feed on each status refresh: a direct get is
one request per key, cheaper than a snapshot of the whole bucket when the cluster has many
feeds, and needs no watcher state to repair after a broker restart.

Why the bucket and not the streams' last message per subject: a signal is rare (minutes apart),
so "the last signal" would need a look-up in SIGNALS on top of PRICES for every symbol, and a
stream's last message does not carry the SMA values at signal time; the converter has all of
them at hand when it publishes, and one KV entry per symbol is the smallest thing to read.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from fairprice.common.broker_errors import broker_errors
from fairprice.common.errors import InvalidMessageError, NotFoundError
from fairprice.common.feeds import Feed
from fairprice.common.kv import Bucket, latest_key
from fairprice.common.logs import get_logger
from fairprice.common.messages import Latest, decode

__all__ = ["LatestReader", "decode_latest"]

log = get_logger(__name__)


def decode_latest(data: bytes) -> Latest | None:
    """The entry, or ``None`` (logged) when it cannot be read."""
    try:
        return decode(data, Latest)
    except InvalidMessageError as exc:
        log.warning("ignoring invalid latest entry", error=str(exc))
        return None


class LatestReader:
    """Reads a feed's symbols from the ``latest`` bucket, once the converter has created it.

    The operator never creates this bucket: its owner (the converter) chooses its settings.
    Until it exists every symbol reads as having no value yet.
    """

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._kv: KeyValue | None = None

    async def read(self, feed: Feed) -> dict[str, Latest | None]:
        kv = await self._bucket()
        values: dict[str, Latest | None] = dict.fromkeys(feed.symbols)
        if kv is None:
            return values
        for symbol in feed.symbols:
            try:
                with broker_errors(f"latest value of {symbol}"):
                    entry = await kv.get(latest_key(feed.exchange, symbol))
            except NotFoundError:
                continue
            if entry.value:
                values[symbol] = decode_latest(entry.value)
        return values

    async def _bucket(self) -> KeyValue | None:
        if self._kv is None:
            try:
                with broker_errors("KV latest"):
                    self._kv = await self._js.key_value(Bucket.LATEST.value)
            except NotFoundError:
                return None
        return self._kv
