"""Binance's spot REST endpoints: ``/api/v3/depth``, ``/api/v3/exchangeInfo``, ``/api/v3/ping``.

A middleware in front of them charges each request's weight to the client's IP (answering 429
or 418 past the limit, see ``weights``), applies the REST faults (delay, forced errors) and sets
``X-MBX-USED-WEIGHT-1M`` on every answer, errors included.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from fairprice.common.lifecycle import wait_or_stop
from fairprice.simulator import wire
from fairprice.simulator.faults import Faults
from fairprice.simulator.market import Market, SymbolSpec
from fairprice.simulator.metrics import SimulatorMetrics
from fairprice.simulator.streams import Hub
from fairprice.simulator.weights import WeightLimiter, depth_weight

__all__ = ["RestApi"]

_MAX_DEPTH = 5000
_JSON = "application/json"
_ENDPOINTS = {
    "/api/v3/depth": "depth",
    "/api/v3/exchangeInfo": "exchangeInfo",
    "/api/v3/ping": "ping",
}
_WEIGHTS = {"exchangeInfo": 20, "ping": 1}
_ORDER_TYPES = ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"]
_SERVER_ERRORS = {
    500: (-1001, "Internal error; unable to process your request. Please try again."),
    503: (
        -1008,
        "Server is currently overloaded with other requests. Please try again in a few minutes.",
    ),
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _BadRequest(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def _json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status, content_type=_JSON, headers=headers)


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return 100
    if not raw.isdigit() or len(raw) > 20:
        raise _BadRequest(
            -1100, "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'."
        )
    return min(max(int(raw), 1), _MAX_DEPTH)


def _symbol_info(spec: SymbolSpec) -> dict[str, Any]:
    return {
        "symbol": spec.symbol,
        "status": "TRADING",
        "baseAsset": spec.base_asset,
        "baseAssetPrecision": 8,
        "quoteAsset": spec.quote_asset,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": _ORDER_TYPES,
        "icebergAllowed": True,
        "ocoAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": spec.tick_size,
                "maxPrice": "1000000.00000000",
                "tickSize": spec.tick_size,
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": spec.step_size,
                "maxQty": "9000000.00000000",
                "stepSize": spec.step_size,
            },
        ],
        "permissions": ["SPOT"],
    }


class RestApi:
    def __init__(
        self,
        hub: Hub,
        market: Market,
        faults: Faults,
        limiter: WeightLimiter,
        metrics: SimulatorMetrics,
    ) -> None:
        self._hub = hub
        self._market = market
        self._faults = faults
        self._limiter = limiter
        self._metrics = metrics
        self._infos: dict[str, dict[str, Any]] = {}
        self.stopping = asyncio.Event()
        """Set when the simulator stops: delayed answers go out at once."""

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v3/depth", self._depth),
            web.get("/api/v3/exchangeInfo", self._exchange_info),
            web.get("/api/v3/ping", self._ping),
        ]

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        endpoint = _ENDPOINTS.get(request.path)
        if endpoint is None:
            return await handler(request)
        response = await self._answer(request, endpoint, handler)
        self._metrics.rest_requests.labels(endpoint, str(response.status)).inc()
        return response

    async def _answer(
        self, request: web.Request, endpoint: str, handler: Handler
    ) -> web.StreamResponse:
        ip = request.remote or ""
        if self._faults.rest_delay_s:
            self._metrics.faults.labels("rest_delay").inc()
            await wait_or_stop(self.stopping, self._faults.rest_delay_s)
        now = time.time()
        forced = self._faults.rest_error()
        if forced:
            self._metrics.faults.labels(
                f"rest_{forced // 100}xx" if forced >= 500 else f"rest_{forced}"
            ).inc()
            used = self._limiter.used(ip, now)
            return self._error_response(
                forced, used, self._faults.retry_after, now + self._faults.retry_after
            )
        try:
            weight = depth_weight(_limit(request)) if endpoint == "depth" else _WEIGHTS[endpoint]
        except _BadRequest:
            weight = 1
        decision = self._limiter.charge(ip, weight, now)
        self._metrics.weight_used.inc(weight)
        if decision.status != 200:
            return self._error_response(
                decision.status,
                decision.used,
                decision.retry_after,
                decision.banned_until_ms / 1000,
            )
        headers = {"X-MBX-USED-WEIGHT-1M": str(decision.used)}
        try:
            response = await handler(request)
        except _BadRequest as exc:
            return _json(wire.error_body(exc.code, exc.msg), 400, headers)
        response.headers.update(headers)
        return response

    def _error_response(
        self, status: int, used: int, retry_after: int, until: float
    ) -> web.Response:
        headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
        if status == 429:
            headers["Retry-After"] = str(retry_after)
            body = wire.error_body(
                -1003,
                f"Too much request weight used; current limit is {self._limiter.limit} request "
                "weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid "
                "polling the API.",
            )
        elif status == 418:
            headers["Retry-After"] = str(retry_after)
            body = wire.error_body(
                -1003,
                f"Way too much request weight used; IP banned until {int(until * 1000)}. Please "
                "use WebSocket Streams for live updates to avoid bans.",
            )
        else:
            body = wire.error_body(*_SERVER_ERRORS.get(status, _SERVER_ERRORS[500]))
        return _json(body, status, headers)

    # ---- endpoints -------------------------------------------------------------------

    async def _depth(self, request: web.Request) -> web.Response:
        symbol = request.query.get("symbol", "")
        if not symbol:
            raise _BadRequest(
                -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            )
        if symbol not in self._market:
            raise _BadRequest(-1121, "Invalid symbol.")
        limit = _limit(request)
        book = self._hub.touch(symbol)
        stale = self._faults.stale_ticks(symbol)
        if stale:
            self._metrics.faults.labels("stale_snapshot").inc()
            view = book.book_at(book.final_id_ticks_ago(stale), limit)
        else:
            view = book.top(limit)
        return _json(wire.partial_book(view.last_update_id, view.bids, view.asks))

    async def _exchange_info(self, request: web.Request) -> web.Response:
        names = self._requested_symbols(request)
        symbols = [self._info(name) for name in names]
        body = {
            "timezone": "UTC",
            "serverTime": int(time.time() * 1000),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": self._limiter.limit,
                },
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160000},
                {
                    "rateLimitType": "RAW_REQUESTS",
                    "interval": "MINUTE",
                    "intervalNum": 5,
                    "limit": 61000,
                },
            ],
            "exchangeFilters": [],
            "symbols": symbols,
        }
        return _json(wire.encode(body))

    def _requested_symbols(self, request: web.Request) -> list[str]:
        if "symbol" in request.query:
            names = [request.query["symbol"]]
        elif "symbols" in request.query:
            try:
                names = msgspec.json.decode(request.query["symbols"], type=list[str])
            except msgspec.DecodeError:
                raise _BadRequest(
                    -1100, "Illegal characters found in parameter 'symbols'."
                ) from None
        else:
            return list(self._market.specs)
        if not all(name in self._market for name in names):
            raise _BadRequest(-1121, "Invalid symbol.")
        return names

    def _info(self, name: str) -> dict[str, Any]:
        info = self._infos.get(name)
        if info is None:
            info = self._infos[name] = _symbol_info(self._market.specs[name])
        return info

    async def _ping(self, _request: web.Request) -> web.Response:
        return _json(b"{}")
