"""The WebSocket side: connections, subscriptions, the market clock and the fan-out.

One clock task ticks every ``tick_ms``. On each tick every *active* symbol (streamed by someone,
or used over REST within ``idle_after_s``) advances one step, and the frames of that step are
encoded once and queued on every subscribed connection; each connection has a writer task that
drains its queue. A symbol nobody uses does not move: its event sequence is still the same, it
just starts later (see docs/simulator.md).

Connection rules as Binance documents them: a ping every ``ping_interval_s``, closed when no
pong comes within ``pong_timeout_s``; at most ``max_streams`` streams; more than
``max_incoming_per_s`` incoming messages (text, ping, pong) in a second closes it; every
connection is closed after ``connection_lifetime_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from fairprice.common.logs import get_logger
from fairprice.simulator import wire
from fairprice.simulator.faults import Faults
from fairprice.simulator.market import Market, SymbolBook
from fairprice.simulator.metrics import SimulatorMetrics
from fairprice.simulator.settings import SimulatorSection

__all__ = ["Connection", "Hub"]

log = get_logger(__name__)

_STREAM = re.compile(r"^(?:[a-z0-9]+@[A-Za-z0-9_@]+|![A-Za-z0-9_@]+)$")
_METHODS = "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"
_MALFORMED = b'{"stream":"malformed","data":{"e":"depthUpdate","E":'
_PARTIAL_LEVELS = (5, 10, 20)
_MAX_LAG_S = 5.0  # a clock this far behind skips ahead instead of bursting
_CLOSE_TIMEOUT_S = 5.0


@dataclass(eq=False, slots=True)
class _Feed:
    """The stream names of one symbol and what its slow (1000 ms) streams accumulate."""

    book: SymbolBook
    symbol: str
    diff_fast: str
    diff_slow: str
    partial: list[tuple[int, str, str]]
    ticker: str
    slow_first: int = 0
    slow_final: int = 0
    slow_bids: dict[int, int] = field(default_factory=dict)
    slow_asks: dict[int, int] = field(default_factory=dict)
    last_best: tuple[int, int, int, int] | None = None


class Connection:
    """One client WebSocket: its streams, its outgoing queue and its keep-alive."""

    def __init__(
        self, hub: Hub, ws: web.WebSocketResponse, request: web.Request, combined: bool
    ) -> None:
        self.hub = hub
        self.ws = ws
        self.combined = combined
        self._transport = request.transport
        self.streams: dict[str, None] = {}  # insertion-ordered set
        self._queue: list[bytes] = []
        self._wake = asyncio.Event()
        self._unanswered_since = 0.0
        self._incoming: deque[float] = deque()
        self._closing: tuple[int, str] | None = None
        self.close_reason = ""

    # ---- outgoing --------------------------------------------------------------------

    def push(self, frame: bytes) -> None:
        faults = self.hub.faults
        if faults.frames_faulty:
            fault = faults.frame()
            if fault == "truncated":
                frame = frame[: len(frame) // 2]
                self.hub.metrics.faults.labels("truncated").inc()
            elif fault == "malformed":
                self._queue.append(_MALFORMED)
                self.hub.metrics.faults.labels("malformed").inc()
        self._queue.append(frame)
        if len(self._queue) > self.hub.settings.send_buffer_frames and not self.close_reason:
            self.abort("slow_consumer")
        self._wake.set()

    async def write_loop(self) -> None:
        """Send the queued frames; after a ``close()``, send what was queued, then close."""
        send = self.ws.send_frame
        sent = self.hub.metrics.frames_sent
        while True:
            await self._wake.wait()
            self._wake.clear()
            frames, self._queue = self._queue, []
            for frame in frames:
                await send(frame, WSMsgType.TEXT)
            sent.inc(len(frames))
            if self._closing is not None:
                code, message = self._closing
                await self.ws.close(code=code, message=message.encode())
                return

    # ---- closing ---------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        return self._closing is not None

    def close(self, reason: str, code: int = 1000, message: str = "") -> None:
        """Close with a close frame once the frames queued so far are sent."""
        if self.close_reason:
            return
        self.close_reason = reason
        self.hub.metrics.disconnects.labels(reason).inc()
        self._closing = (code, message)
        self._wake.set()

    def abort(self, reason: str) -> None:
        """Drop the TCP connection without a close frame."""
        if self.close_reason:
            return
        self.close_reason = reason
        self.hub.metrics.disconnects.labels(reason).inc()
        if self._transport is not None:
            self._transport.abort()

    async def keepalive(self) -> None:
        settings = self.hub.settings
        loop = asyncio.get_running_loop()
        opened = loop.time()
        next_ping = opened + settings.ping_interval_s
        while True:
            now = loop.time()
            if now - opened >= settings.connection_lifetime_s:
                self.close("lifetime", 1000, "connection lifetime reached")
                return
            if self._unanswered_since and now - self._unanswered_since >= settings.pong_timeout_s:
                self.close("pong_timeout", 1008, "pong timeout")
                return
            if now >= next_ping:
                await self.ws.ping(str(int(time.time() * 1000)).encode())
                if not self._unanswered_since:
                    self._unanswered_since = now
                next_ping = now + settings.ping_interval_s
            deadlines = [next_ping, opened + settings.connection_lifetime_s]
            if self._unanswered_since:
                deadlines.append(self._unanswered_since + settings.pong_timeout_s)
            await asyncio.sleep(max(0.0, min(deadlines) - loop.time()))

    # ---- incoming --------------------------------------------------------------------

    async def read_loop(self) -> None:
        limit = self.hub.settings.max_incoming_per_s
        loop = asyncio.get_running_loop()
        async for msg in self.ws:
            now = loop.time()
            self._incoming.append(now)
            while self._incoming[0] <= now - 1.0:
                self._incoming.popleft()
            if len(self._incoming) > limit:
                self.close("message_rate", 1008, "too many messages")
                return
            if msg.type == WSMsgType.PING:
                await self.ws.pong(msg.data)
            elif msg.type == WSMsgType.PONG:
                self._unanswered_since = 0.0
            elif msg.type == WSMsgType.TEXT:
                self._queue.append(self._method(msg.data))
                self._wake.set()
            elif msg.type == WSMsgType.BINARY:
                self._queue.append(wire.method_error(3, "Invalid JSON: binary frame", None))
                self._wake.set()

    def _method(self, text: str) -> bytes:
        try:
            request: Any = msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            return wire.method_error(3, f"Invalid JSON: {exc}", None)
        if not isinstance(request, dict):
            return wire.method_error(2, "Invalid request: expected a JSON object", None)
        request_id = request.get("id")
        if request_id is not None and (
            not isinstance(request_id, int) or isinstance(request_id, bool) or request_id < 0
        ):
            return wire.method_error(
                2, "Invalid request: request ID must be an unsigned integer", None
            )
        method = request.get("method")
        if method is None:
            return wire.method_error(2, "Invalid request: missing field `method`", request_id)
        params = request.get("params", [])
        if not isinstance(params, list):
            return wire.method_error(2, "Invalid request: params must be an array", request_id)
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not all(isinstance(p, str) and _STREAM.match(p) for p in params):
                return wire.method_error(2, "Invalid request: invalid stream", request_id)
            if method == "UNSUBSCRIBE":
                self.hub.unsubscribe(self, params)
                return wire.method_result(None, request_id)
            new = [p for p in dict.fromkeys(params) if p not in self.streams]
            if len(self.streams) + len(new) > self.hub.settings.max_streams:
                return wire.method_error(2, "Invalid request: too many streams", request_id)
            self.hub.subscribe(self, new)
            return wire.method_result(None, request_id)
        if method == "LIST_SUBSCRIPTIONS":
            return wire.method_result(list(self.streams), request_id)
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            if not params or params[0] != "combined":
                return wire.method_error(0, "Unknown property", request_id)
            if method == "GET_PROPERTY":
                return wire.method_result(self.combined, request_id)
            if len(params) != 2 or not isinstance(params[1], bool):
                return wire.method_error(1, "Invalid value type: expected Boolean", request_id)
            self.combined = params[1]
            return wire.method_result(None, request_id)
        return wire.method_error(
            2,
            f"Invalid request: unknown variant `{method}`, expected one of {_METHODS}",
            request_id,
        )


class Hub:
    """Every connection and subscription, and the clock that moves the market."""

    def __init__(
        self,
        settings: SimulatorSection,
        market: Market,
        faults: Faults,
        metrics: SimulatorMetrics,
    ) -> None:
        self.settings = settings
        self.market = market
        self.faults = faults
        self.metrics = metrics
        self.connections: set[Connection] = set()
        self.subscribers: dict[str, set[Connection]] = {}
        self._symbol_streams: dict[str, int] = {}  # symbol -> subscriptions to its streams
        self._rest_used: dict[str, float] = {}  # symbol -> monotonic time of last REST use
        self._last_event_ms = 0
        self._feeds: dict[str, _Feed] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._no_connections = asyncio.Event()
        self._no_connections.set()

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Close every connection (code 1001) and wait for their handlers to finish."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for conn in list(self.connections):
            conn.close("server_stop", 1001, "server stopping")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._no_connections.wait(), _CLOSE_TIMEOUT_S)

    # ---- subscriptions ---------------------------------------------------------------

    def _symbol_of(self, stream: str) -> str | None:
        name = stream.partition("@")[0]
        spec = self.market.lookup(name.upper()) if name.islower() else None
        return spec.symbol if spec else None

    def subscribe(self, conn: Connection, streams: list[str]) -> None:
        for stream in streams:
            if stream in conn.streams:
                continue
            conn.streams[stream] = None
            self.subscribers.setdefault(stream, set()).add(conn)
            symbol = self._symbol_of(stream)
            if symbol is not None:
                self._symbol_streams[symbol] = self._symbol_streams.get(symbol, 0) + 1
                self.feed(symbol)

    def unsubscribe(self, conn: Connection, streams: list[str]) -> None:
        for stream in streams:
            if stream not in conn.streams:
                continue
            del conn.streams[stream]
            subs = self.subscribers[stream]
            subs.discard(conn)
            if not subs:
                del self.subscribers[stream]
            symbol = self._symbol_of(stream)
            if symbol is not None:
                left = self._symbol_streams[symbol] - 1
                if left:
                    self._symbol_streams[symbol] = left
                else:
                    del self._symbol_streams[symbol]

    def feed(self, symbol: str) -> _Feed:
        feed = self._feeds.get(symbol)
        if feed is None:
            lower = symbol.lower()
            feed = self._feeds[symbol] = _Feed(
                book=self.market.book(symbol),
                symbol=symbol,
                diff_fast=f"{lower}@depth@100ms",
                diff_slow=f"{lower}@depth",
                partial=[
                    (n, f"{lower}@depth{n}@100ms", f"{lower}@depth{n}") for n in _PARTIAL_LEVELS
                ],
                ticker=f"{lower}@bookTicker",
            )
        return feed

    def touch(self, symbol: str) -> SymbolBook:
        """A REST use of ``symbol``: it keeps moving for ``idle_after_s``."""
        self._rest_used[symbol] = time.monotonic()
        return self.feed(symbol).book

    # ---- connections -----------------------------------------------------------------

    async def handle(
        self, request: web.Request, streams: list[str], combined: bool
    ) -> web.WebSocketResponse:
        # No permessage-deflate: Binance spot streams do not offer it either.
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = Connection(self, ws, request, combined)
        self.connections.add(conn)
        self._no_connections.clear()
        self.metrics.connections.inc()
        valid = [s for s in dict.fromkeys(streams) if _STREAM.match(s)]
        if len(valid) > self.settings.max_streams:
            conn.close("too_many_streams", 1008, "too many streams")
        else:
            self.subscribe(conn, valid)
        reader = asyncio.create_task(conn.read_loop())
        writer = asyncio.create_task(conn.write_loop())
        keepalive = asyncio.create_task(conn.keepalive())
        tasks = (reader, writer, keepalive)
        try:
            await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
            if conn.closing and not writer.done():
                # We are closing it: let the writer flush and send the close frame.
                await asyncio.wait((writer,), timeout=_CLOSE_TIMEOUT_S)
        finally:
            for task in tasks:
                task.cancel()
            for outcome in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(outcome, Exception) and not isinstance(outcome, ConnectionError):
                    log.warning("connection failed", error=repr(outcome))
            self.unsubscribe(conn, list(conn.streams))
            self.connections.discard(conn)
            if not self.connections:
                self._no_connections.set()
            self.metrics.connections.dec()
        return ws

    def disconnect(
        self, count: int | None = None, symbol: str | None = None, abort: bool = False
    ) -> int:
        """Close ``count`` connections (all if None), only those streaming ``symbol`` if given."""
        chosen = [
            conn
            for conn in self.connections
            if not conn.close_reason
            and (symbol is None or any(self._symbol_of(s) == symbol for s in conn.streams))
        ]
        chosen = chosen[:count] if count is not None else chosen
        for conn in chosen:
            if abort:
                conn.abort("forced")
            else:
                conn.close("forced", 1001, "forced disconnect")
        self.metrics.faults.labels("disconnect").inc(len(chosen))
        return len(chosen)

    def server_shutdown(self, close_after_s: float) -> int:
        """Send ``{"e":"serverShutdown","E":..}`` to every connection, close them later."""
        frame = wire.server_shutdown(int(time.time() * 1000))
        chosen = [conn for conn in self.connections if not conn.close_reason]
        for conn in chosen:
            conn.push(frame)
        self.metrics.faults.labels("server_shutdown").inc()

        async def close_later() -> None:
            await asyncio.sleep(close_after_s)
            for conn in chosen:
                conn.close("server_shutdown", 1001, "server shutdown")

        self.spawn(close_later())
        return len(chosen)

    # ---- the market clock ------------------------------------------------------------

    async def run_clock(self) -> None:
        loop = asyncio.get_running_loop()
        tick_s = self.settings.market.tick_ms / 1000.0
        start, n = loop.time(), 0
        while True:
            n += 1
            delay = start + n * tick_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -_MAX_LAG_S:
                log.warning("market clock behind, skipping ahead", behind_s=round(-delay, 1))
                start, n = loop.time(), 0
            else:
                await asyncio.sleep(0)
            self.tick()

    def active_symbols(self) -> list[str]:
        idle = time.monotonic() - self.settings.market.idle_after_s
        for symbol in [s for s, used in self._rest_used.items() if used < idle]:
            del self._rest_used[symbol]
        return list(self._symbol_streams.keys() | self._rest_used.keys())

    def tick(self) -> None:
        """Advance every active symbol one step and send its frames."""
        # The wall clock, but strictly increasing: a loop running late catches up with ticks
        # back to back, and two events of a symbol must never share an event time (Binance's
        # are 100 ms apart; InfluxDB keys a point by its time, so one would overwrite the other).
        now_ms = max(int(time.time() * 1000), self._last_event_ms + 1)
        self._last_event_ms = now_ms
        active = self.active_symbols()
        self.metrics.active_symbols.set(len(active))
        self.metrics.market_events.inc(len(active))
        slow_ticks = self.settings.market.slow_ticks
        subscribers = self.subscribers
        for symbol in active:
            feed = self._feeds[symbol]
            book = feed.book
            result = book.step()
            slow = book.steps % slow_ticks == 0
            if result is not None:
                if feed.diff_fast in subscribers and not self._dropped(symbol):
                    self.publish(
                        feed.diff_fast,
                        wire.depth_update(
                            now_ms,
                            symbol,
                            result.first_id,
                            result.final_id,
                            book.levels(result.bids),
                            book.levels(result.asks),
                        ),
                    )
                if not feed.slow_first:
                    feed.slow_first = result.first_id
                feed.slow_final = result.final_id
                feed.slow_bids.update(result.bids)
                feed.slow_asks.update(result.asks)
            if slow and feed.slow_first:
                if feed.diff_slow in subscribers and not self._dropped(symbol):
                    self.publish(
                        feed.diff_slow,
                        wire.depth_update(
                            now_ms,
                            symbol,
                            feed.slow_first,
                            feed.slow_final,
                            book.levels(feed.slow_bids),
                            book.levels(feed.slow_asks),
                        ),
                    )
                feed.slow_first = 0
                feed.slow_bids = {}
                feed.slow_asks = {}
            for levels, fast_name, slow_name in feed.partial:
                if fast_name in subscribers or (slow and slow_name in subscribers):
                    view = book.top(levels)
                    payload = wire.partial_book(view.last_update_id, view.bids, view.asks)
                    if fast_name in subscribers:
                        self.publish(fast_name, payload)
                    if slow and slow_name in subscribers:
                        self.publish(slow_name, payload)
            if feed.ticker in subscribers:
                best = book.best()
                if best is not None and best != feed.last_best:
                    feed.last_best = best
                    self.publish(
                        feed.ticker,
                        wire.book_ticker(
                            book.last_update_id,
                            symbol,
                            book.price(best[0]),
                            book.qty(best[1]),
                            book.price(best[2]),
                            book.qty(best[3]),
                        ),
                    )

    def _dropped(self, symbol: str) -> bool:
        if self.faults.drop(symbol):
            self.metrics.faults.labels("drop").inc()
            return True
        return False

    def publish(self, stream: str, payload: bytes) -> None:
        wrapped: bytes | None = None
        for conn in self.subscribers[stream]:
            if conn.combined:
                if wrapped is None:
                    wrapped = wire.combined(stream.encode(), payload)
                conn.push(wrapped)
            else:
                conn.push(payload)
