"""The HTTP routes (FastAPI): what each answers, its errors, and the OpenAPI document.

FastAPI because it writes the OpenAPI document from the same type hints that validate the
requests (a bad parameter is a 422 naming it, with no code of ours), it is built on pydantic,
which the settings already use, and ``fastapi-offline`` serves its Swagger UI and ReDoc pages
from assets shipped in the wheel, so ``/docs`` works with no internet.

Errors are JSON (``ErrorOut``): unknown symbol 404, bad parameter 422 (``parameter`` names
it), bad or missing token 401, NATS or InfluxDB down 503 with ``Retry-After``, a stream
cursor older than the replica's window 410.
"""

import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException

from fairprice.api.history import HistoryReader, InfluxUnavailableError, Interval
from fairprice.api.latest import LatestReader, NatsUnavailableError
from fairprice.api.metrics import ApiMetrics, RequestMetrics
from fairprice.api.models import (
    CandleOut,
    CandlesOut,
    ErrorOut,
    PriceOut,
    PricesOut,
    SignalOut,
    SignalsOut,
)
from fairprice.api.settings import ApiSection
from fairprice.api.stream import (
    Cursor,
    CursorTooOldError,
    StreamWindow,
    WindowNotReadyError,
    parse_cursor,
)
from fairprice.common.messages import Latest
from fairprice.common.subjects import Stream

__all__ = ["Backends", "create_app"]

TITLE = "fairprice price API"
DESCRIPTION = """Latest fair prices, their history and a live stream, from the fairprice
pipeline. Times are milliseconds since the Unix epoch (exchange event time) unless said
otherwise. With `[api] token` set, every `/v1` request needs `Authorization: Bearer <token>`."""

_EXCHANGE = r"^[a-z0-9_]{1,32}$"
_SYMBOL = r"^[A-Za-z0-9]{2,32}$"
_KINDS = {"price": Stream.PRICES, "signal": Stream.SIGNALS}


@dataclass(frozen=True)
class Backends:
    """What the routes read; set on ``app.state.backends`` by the service."""

    latest: LatestReader
    history: HistoryReader
    window: StreamWindow


def _backends(request: Request) -> Backends:
    found: Backends = request.app.state.backends
    return found


BackendsDep = Annotated[Backends, Depends(_backends)]


class _ApiError(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        parameter: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.headers, self.parameter = headers, parameter


def _error(
    status: int,
    error: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    parameter: str | None = None,
) -> JSONResponse:
    body = ErrorOut(error=error, message=message, parameter=parameter).model_dump()
    return JSONResponse(body, status_code=status, headers=headers)


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in (
        (401, "missing or wrong bearer token (only when a token is configured)"),
        (404, "unknown symbol: no fair price for it yet"),
        (422, "a bad parameter, named in `parameter`"),
        (503, "NATS or InfluxDB is down (or the stream window is filling); see Retry-After"),
    )
}

ExchangePath = Annotated[str, Path(pattern=_EXCHANGE, examples=["binance"])]
SymbolPath = Annotated[str, Path(pattern=_SYMBOL, examples=["BTCUSDT"])]
Start = Annotated[
    datetime | None,
    Query(description="ISO 8601 time or Unix seconds; default `end` minus a day"),
]
End = Annotated[datetime | None, Query(description="ISO 8601 time or Unix seconds; default now")]
HistoryCursor = Annotated[
    int | None, Query(ge=0, description="`next_cursor` of the previous page (replaces `start`)")
]


def create_app(section: ApiSection, metrics: ApiMetrics) -> FastAPI:
    """The application; its routes read ``app.state.backends``."""
    app = FastAPIOffline(
        title=TITLE,
        description=DESCRIPTION,
        version="1",
        redoc_url="/redoc",
        responses=_ERRORS,
    )
    bearer = HTTPBearer(auto_error=False, description="`[api] token` (off unless set)")

    async def authorize(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if section.token is None:
            return
        expected = section.token.get_secret_value().encode()
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, expected):
            raise _ApiError(
                401,
                "unauthorized",
                "a valid bearer token is required",
                {"WWW-Authenticate": "Bearer"},
            )

    router = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])

    async def known(b: Backends, exchange: str, symbol: str) -> Latest:
        latest = await b.latest.get(exchange, symbol)
        if latest is None:
            raise _ApiError(404, "unknown_symbol", f"no fair price for {exchange} {symbol}")
        return latest

    def window_ms(start: datetime | None, end: datetime | None, cursor: int | None) -> range:
        end_ms = int((end.timestamp() if end else time.time()) * 1000)
        if cursor is not None:
            start_ms = cursor
        elif start is not None:
            start_ms = int(start.timestamp() * 1000)
        else:
            start_ms = end_ms - int(section.default_history_s * 1000)
        if start_ms >= end_ms:
            raise _ApiError(422, "invalid_parameter", "start must be before end", parameter="start")
        return range(start_ms, end_ms)

    Limit = Annotated[int, Query(ge=1, le=section.max_rows, description="rows per page")]

    @router.get("/prices", response_model=PricesOut, summary="Latest price of every symbol")
    async def prices(b: BackendsDep) -> PricesOut:
        now = time.time()
        return PricesOut(prices=[_price(v, now) for v in await b.latest.all()])

    @router.get(
        "/prices/{exchange}/{symbol}", response_model=PriceOut, summary="Latest price of a symbol"
    )
    async def price(exchange: ExchangePath, symbol: SymbolPath, b: BackendsDep) -> PriceOut:
        return _price(await known(b, exchange, symbol.upper()), time.time())

    @router.get(
        "/candles/{exchange}/{symbol}",
        response_model=CandlesOut,
        summary="OHLC candles of the fair price",
    )
    async def candles(
        exchange: ExchangePath,
        symbol: SymbolPath,
        b: BackendsDep,
        interval: Interval = "1m",
        start: Start = None,
        end: End = None,
        cursor: HistoryCursor = None,
        limit: Limit = section.default_rows,
    ) -> CandlesOut:
        symbol = symbol.upper()
        span = window_ms(start, end, cursor)
        await known(b, exchange, symbol)
        page = await b.history.candles(exchange, symbol, interval, span.start, span.stop, limit)
        return CandlesOut(
            exchange=exchange,
            symbol=symbol,
            interval=interval,
            candles=[CandleOut(**row) for row in page.rows],
            next_cursor=page.next_cursor,
        )

    @router.get(
        "/signals/{exchange}/{symbol}", response_model=SignalsOut, summary="Past BUY/SELL signals"
    )
    async def signals(
        exchange: ExchangePath,
        symbol: SymbolPath,
        b: BackendsDep,
        start: Start = None,
        end: End = None,
        cursor: HistoryCursor = None,
        limit: Limit = section.default_rows,
    ) -> SignalsOut:
        symbol = symbol.upper()
        span = window_ms(start, end, cursor)
        await known(b, exchange, symbol)
        page = await b.history.signals(exchange, symbol, span.start, span.stop, limit)
        return SignalsOut(
            exchange=exchange,
            symbol=symbol,
            signals=[SignalOut(**row) for row in page.rows],
            next_cursor=page.next_cursor,
        )

    @router.get(
        "/stream",
        summary="Live prices and signals (Server-Sent Events)",
        response_class=EventSourceResponse,
        responses={
            200: {
                "description": "`event: price` (a FairPrice message), `event: signal` (a "
                "Signal message), each with `id: <PRICES seq>.<SIGNALS seq>`; a final "
                "`event: error` (too slow: dropped) or `event: close` (replica stopping)",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            410: {"model": ErrorOut, "description": "the cursor is older than the window"},
        },
    )
    async def stream(
        b: BackendsDep,
        symbols: Annotated[
            str,
            Query(
                description="comma-separated `<exchange>.<SYMBOL>`, e.g. `binance.BTCUSDT`",
                examples=["binance.BTCUSDT,binance.ETHUSDT"],
            ),
        ],
        kinds: Annotated[
            str, Query(description="comma-separated: `price`, `signal`", pattern=r"^[a-z,]+$")
        ] = "price,signal",
        last_event_id: Annotated[
            str | None,
            Header(description="the `id` of the last event seen: resume right after it"),
        ] = None,
        cursor: Annotated[
            str | None, Query(description="like `Last-Event-ID`, for clients that cannot set it")
        ] = None,
    ) -> EventSourceResponse:
        keys = await _stream_keys(b, symbols, section.stream.max_symbols)
        wanted = _stream_kinds(kinds)
        start = _stream_cursor(last_event_id or cursor)
        try:
            events = b.window.events(keys, wanted, start)
        except CursorTooOldError as exc:
            raise _ApiError(410, "cursor_too_old", str(exc)) from exc
        return EventSourceResponse(
            _counted(b.window, metrics, events),
            ping=section.stream.ping_s,
            send_timeout=section.stream.send_timeout_s,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    app.include_router(router)
    _install_error_handlers(app, section, metrics)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return app


async def _counted(
    window: StreamWindow, metrics: ApiMetrics, events: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    metrics.stream_clients.inc()
    dropped = window.dropped
    try:
        async for chunk in events:
            yield chunk
    finally:
        metrics.stream_clients.dec()
        metrics.stream_dropped.inc(window.dropped - dropped)


async def _stream_keys(b: Backends, symbols: str, most: int) -> frozenset[str]:
    keys: set[str] = set()
    for item in filter(None, symbols.split(",")):
        exchange, _, symbol = item.strip().partition(".")
        if not (symbol and exchange.isidentifier() and symbol.isalnum()):
            raise _ApiError(
                422,
                "invalid_parameter",
                f"symbols: {item!r} is not <exchange>.<SYMBOL>",
                parameter="symbols",
            )
        symbol = symbol.upper()
        if await b.latest.get(exchange, symbol) is None:
            raise _ApiError(404, "unknown_symbol", f"no fair price for {exchange} {symbol}")
        keys.add(f"{exchange}.{symbol}")
    if not keys or len(keys) > most:
        raise _ApiError(
            422, "invalid_parameter", f"symbols: give 1 to {most} symbols", parameter="symbols"
        )
    return frozenset(keys)


def _stream_kinds(kinds: str) -> frozenset[Stream]:
    try:
        return frozenset(_KINDS[k] for k in kinds.split(",") if k)
    except KeyError as exc:
        raise _ApiError(
            422,
            "invalid_parameter",
            f"kinds: {exc.args[0]!r} is not price or signal",
            parameter="kinds",
        ) from None


def _stream_cursor(text: str | None) -> Cursor | None:
    if text is None:
        return None
    try:
        return parse_cursor(text)
    except ValueError:
        raise _ApiError(
            422,
            "invalid_parameter",
            f"Last-Event-ID: {text!r} is not <PRICES seq>.<SIGNALS seq>",
            parameter="Last-Event-ID",
        ) from None


def _price(latest: Latest, now: float) -> PriceOut:
    return PriceOut(
        exchange=latest.exchange,
        symbol=latest.symbol,
        method=latest.method,
        price=latest.price,
        mid=latest.mid,
        spread=latest.spread,
        sma_fast=latest.sma_fast,
        sma_slow=latest.sma_slow,
        signal=latest.signal,
        signal_time_ms=latest.signal_time_ms,
        update_id=latest.update_id,
        event_time_ms=latest.event_time_ms,
        age_s=round(max(0.0, now - latest.event_time_ms / 1000), 3),
    )


def _install_error_handlers(app: FastAPI, section: ApiSection, metrics: ApiMetrics) -> None:
    retry = {"Retry-After": str(section.retry_after_s)}

    @app.exception_handler(_ApiError)
    async def api_error(_request: Request, exc: _ApiError) -> JSONResponse:
        return _error(
            exc.status, exc.error, exc.message, headers=exc.headers, parameter=exc.parameter
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        name = str(first["loc"][-1]) if first.get("loc") else "request"
        body = ErrorOut(
            error="invalid_parameter", message=f"{name}: {first['msg']}", parameter=name
        ).model_dump()
        body["detail"] = jsonable_encoder(exc.errors())
        return JSONResponse(body, status_code=422)

    @app.exception_handler(NatsUnavailableError)
    async def nats_down(_request: Request, exc: NatsUnavailableError) -> JSONResponse:
        metrics.unavailable.labels("nats").inc()
        return _error(503, "unavailable", f"NATS is unavailable: {exc}", headers=retry)

    @app.exception_handler(InfluxUnavailableError)
    async def influx_down(_request: Request, exc: InfluxUnavailableError) -> JSONResponse:
        metrics.unavailable.labels("influxdb").inc()
        return _error(503, "unavailable", f"InfluxDB is unavailable: {exc}", headers=retry)

    @app.exception_handler(WindowNotReadyError)
    async def window_filling(_request: Request, exc: WindowNotReadyError) -> JSONResponse:
        metrics.unavailable.labels("stream").inc()
        return _error(503, "unavailable", f"{exc}; retry", headers=retry)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return _error(
            exc.status_code,
            "not_found" if exc.status_code == 404 else "http_error",
            str(exc.detail),
            headers=dict(exc.headers or {}),
        )
