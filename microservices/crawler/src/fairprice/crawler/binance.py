"""Binance spot: the one module that knows Binance's wire format, limits and sync rules.

- Streams: ``<symbol>@depth@100ms`` diff events ``{"e":"depthUpdate","E","s","U","u","b","a"}``
  over combined-stream connections (``/stream``, frames ``{"stream":..,"data":..}``), subscribed
  with ``{"method":"SUBSCRIBE","params":[..],"id":n}``; at most 1024 streams per connection,
  5 incoming messages a second, and every connection is closed by the server after 24 hours.
  ``{"e":"serverShutdown"}`` announces that the server is going away.
- Snapshots: ``GET /api/v3/depth?symbol=&limit=`` ``{"lastUpdateId","bids","asks"}``, weight
  5/25/50/250 for limits up to 100/500/1000/5000; ``X-MBX-USED-WEIGHT-1M`` on every response.
  Recordings made before v3 (cryptofeed in early 2021) have ``/api/v1/depth`` snapshots.
- Limits: ``GET /api/v3/exchangeInfo`` (weight 20) lists ``rateLimits``, among them
  ``{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":6000}``.
- Sync ("How to manage a local order book correctly"): refetch a snapshot whose
  ``lastUpdateId`` is below the first buffered event's ``U``; drop events with
  ``u <= lastUpdateId``; the first applied event has ``U <= lastUpdateId + 1 <= u``; every later
  one has ``U`` equal to the previous ``u + 1``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

import msgspec

from fairprice.common.errors import InvalidMessageError
from fairprice.common.messages import Level
from fairprice.crawler.exchange import (
    Control,
    DepthEvent,
    Frame,
    Ignored,
    Snapshot,
    SnapshotRequest,
)

__all__ = ["Binance", "BinanceSimulator", "depth_weight"]

_DEPTH_SUFFIX = "@depth@100ms"
_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
# Where a recording's depth snapshots were fetched: /api/v3/depth today, /api/v1/depth in early
# 2021 (cryptofeed then asked www.binance.com), on either host.
_SNAPSHOT_PATH = re.compile(r"/api/v[13]/depth$")


class _Envelope(msgspec.Struct):
    stream: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"")
    e: str | None = None
    id: int | str | None = None
    error: dict[str, object] | None = None


class _Depth(msgspec.Struct):
    E: int
    s: str
    U: int
    u: int
    b: list[Level]
    a: list[Level]
    e: str = "depthUpdate"


class _Snapshot(msgspec.Struct):
    lastUpdateId: int
    bids: list[Level]
    asks: list[Level]


class _RateLimit(msgspec.Struct):
    rateLimitType: str
    interval: str
    intervalNum: int
    limit: int


class _ExchangeInfo(msgspec.Struct):
    rateLimits: list[_RateLimit] = []


class _CombinedDepth(msgspec.Struct):
    stream: str
    data: _Depth


_decode_combined_depth = msgspec.json.Decoder(_CombinedDepth).decode
_decode_envelope = msgspec.json.Decoder(_Envelope).decode
_decode_depth = msgspec.json.Decoder(_Depth).decode
_decode_snapshot = msgspec.json.Decoder(_Snapshot).decode
_decode_exchange_info = msgspec.json.Decoder(_ExchangeInfo).decode


def depth_weight(limit: int) -> int:
    """Binance's request weight of ``GET /api/v3/depth`` with ``limit``."""
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


class Binance:
    """The Binance spot adapter (see the module docstring for the rules it encodes)."""

    name = "binance"
    max_streams_per_connection = 1024
    max_messages_per_second = 5.0
    max_weight_per_minute = 6000
    snapshot_limits: tuple[int, ...] = (100, 500, 1000, 5000)
    max_connection_s = 24 * 3600.0

    def depth_stream(self, symbol: str) -> str:
        return symbol.lower() + _DEPTH_SUFFIX

    def connection_url(self, ws_url: str) -> str:
        return ws_url.rstrip("/") + "/stream"

    def subscribe_message(self, streams: list[str], request_id: int, subscribe: bool) -> str:
        method = "SUBSCRIBE" if subscribe else "UNSUBSCRIBE"
        return json.dumps({"method": method, "params": streams, "id": request_id})

    def parse_frame(self, data: str | bytes) -> Frame:
        try:  # the fast path: nearly every frame is a combined-stream depth event
            return _depth_event(_decode_combined_depth(data).data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass
        try:
            envelope = _decode_envelope(data)
            if envelope.stream is not None and envelope.data:
                if envelope.stream.endswith(_DEPTH_SUFFIX):
                    return _depth_event(_decode_depth(envelope.data))
                inner = _decode_envelope(envelope.data)
                if inner.e == "serverShutdown":
                    return Control("shutdown")
                return Ignored(envelope.stream)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidMessageError(f"malformed binance frame: {exc}") from exc
        if envelope.e == "serverShutdown":
            return Control("shutdown")
        if envelope.e == "depthUpdate":  # a raw /ws/<symbol>@depth connection
            try:
                return _depth_event(_decode_depth(data))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise InvalidMessageError(f"malformed binance depth event: {exc}") from exc
        if envelope.error is not None:
            return Control("error", json.dumps(envelope.error))
        if envelope.id is not None:
            return Control("reply", str(envelope.id))
        raise InvalidMessageError("binance frame of unknown shape")

    def snapshot_request(self, symbol: str, limit: int) -> SnapshotRequest:
        return SnapshotRequest(
            "/api/v3/depth", {"symbol": symbol, "limit": limit}, depth_weight(limit)
        )

    def limits_request(self, symbol: str | None) -> SnapshotRequest:
        # One symbol keeps the answer small (the whole list is megabytes); the weight is the
        # same, 20.
        params: dict[str, str | int] = {} if symbol is None else {"symbol": symbol}
        return SnapshotRequest("/api/v3/exchangeInfo", params, 20)

    def parse_weight_limit(self, body: bytes) -> int | None:
        try:
            info = _decode_exchange_info(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidMessageError(f"malformed binance exchangeInfo: {exc}") from exc
        for limit in info.rateLimits:
            if (limit.rateLimitType, limit.interval, limit.intervalNum) == (
                "REQUEST_WEIGHT",
                "MINUTE",
                1,
            ):
                return limit.limit
        return None

    def parse_snapshot(self, body: bytes) -> Snapshot:
        try:
            raw = _decode_snapshot(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidMessageError(f"malformed binance depth snapshot: {exc}") from exc
        return Snapshot(raw.lastUpdateId, raw.bids, raw.asks)

    def snapshot_symbol(self, url: str) -> str | None:
        parts = urlsplit(url)
        if _SNAPSHOT_PATH.search(parts.path) is None:
            return None
        symbols = parse_qs(parts.query).get("symbol")
        return symbols[0].upper() if symbols else None

    def snapshot_limit(self, url: str) -> int | None:
        limits = parse_qs(urlsplit(url).query).get("limit")
        if not limits:
            return 100  # Binance's default
        return int(limits[0]) if limits[0].isdigit() else None

    def used_weight(self, headers: Mapping[str, str]) -> int | None:
        value = headers.get(_WEIGHT_HEADER) or headers.get(_WEIGHT_HEADER.lower())
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    def is_stale(self, snapshot_id: int, first_buffered: DepthEvent) -> bool:
        return snapshot_id < first_buffered.first_id

    def starts_after(self, snapshot_id: int, event: DepthEvent) -> bool:
        return event.first_id <= snapshot_id + 1 <= event.last_id

    def continues(self, book_id: int, event: DepthEvent) -> bool:
        return event.first_id == book_id + 1


class BinanceSimulator(Binance):
    """fairprice's own simulator: Binance's wire format, limits and rules, published under
    the exchange name ``sim`` so simulated books never mix with real Binance ones."""

    name = "sim"


def _depth_event(raw: _Depth) -> DepthEvent:
    return DepthEvent(raw.s, raw.U, raw.u, raw.E, raw.b, raw.a)
