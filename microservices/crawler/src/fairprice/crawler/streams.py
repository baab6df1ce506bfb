"""WebSocket connections carrying the diff streams of every owned symbol.

- As few connections as the exchange allows: each holds up to ``streams_per_connection``
  streams (Binance: 1024), subscribed with method messages of up to ``streams_per_message``
  streams, sent no faster than ``messages_per_second`` (Binance disconnects past 5 incoming
  messages a second, pongs included, so the default stays well below).
- Pings: the websockets library answers the server's pings itself (RFC 6455 control frames,
  handled inside its protocol) and sends its own keepalive pings to notice a dead link.
- An unexpected close reconnects with full-jitter exponential backoff and resubscribes; books
  are kept: the first event after the reconnect either continues a book (nothing was missed)
  or shows a gap, and only those symbols resync, paced by the snapshot budget.
- Planned closes (the exchange's 24 h limit, a ``serverShutdown`` announcement) are a
  make-before-break handover: a new connection subscribes the same streams and holds its
  frames; once the server has answered its subscriptions, the old one closes and the held
  frames are released. Events seen on
  both are dropped by update id, so no book notices and no snapshot is fetched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from types import TracebackType

import websockets
from websockets.asyncio.client import ClientConnection, connect

from fairprice.common.errors import InvalidMessageError
from fairprice.common.logs import get_logger
from fairprice.common.retry import Backoff
from fairprice.crawler.exchange import Control, DepthEvent, Exchange
from fairprice.crawler.recording import Recorder

__all__ = ["StreamPool"]

log = get_logger(__name__)

Handler = Callable[[DepthEvent, int], Awaitable[None]]


class _Connection:
    """One WebSocket connection and the streams it should carry; reconnects on its own."""

    def __init__(self, pool: StreamPool, number: int, streams: set[str], *, hold: bool) -> None:
        self.pool = pool
        self.number = number
        self.streams = set(streams)
        self.subscribed: set[str] = set()
        self.opened_at = 0.0
        self.hold = hold
        self.held: list[tuple[DepthEvent, int]] = []
        self.ready = asyncio.Event()
        """Set once the streams wanted are subscribed and the server has answered the last
        subscribe message: from then on it sends their events here (a handover closes the
        old connection only after that, or events in between would be lost)."""
        self.retire = asyncio.Event()
        """Set when the server announced a shutdown or the connection is too old."""
        self._ws: ClientConnection | None = None
        self._wake = asyncio.Event()
        self._next_id = 0
        self._last_sent = 0
        """Id of the last method message sent on this connection."""
        self._answered = 0
        """Highest id the server has answered on this connection."""
        self._sent_at: list[float] = []
        self.task = asyncio.create_task(self._run(), name=f"ws-connection-{number}")

    def want(self, streams: set[str]) -> None:
        self.streams = set(streams)
        self._wake.set()

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def release(self) -> None:
        """Stop holding frames: dispatch the held ones in order, then go live."""
        while self.held:
            batch, self.held = self.held, []
            for event, receive_ms in batch:
                await self.pool.handle(event, receive_ms)
        self.hold = False  # no await since the buffer was seen empty: order is kept

    async def _run(self) -> None:
        pool = self.pool
        attempt = 0
        while True:
            url = pool.exchange.connection_url(pool.ws_url)
            try:
                async with connect(
                    url,
                    compression=None,
                    max_size=pool.max_frame_bytes,
                    open_timeout=pool.open_timeout_s,
                    ping_interval=20,
                    ping_timeout=20,
                    close_timeout=2,
                    proxy=None,
                ) as ws:
                    self._ws = ws
                    self.opened_at = time.monotonic()
                    self.subscribed = set()
                    self._last_sent = self._answered = 0
                    pool.record("open", conn=self.number, url=url)
                    log.info("stream connected", conn=self.number, streams=len(self.streams))
                    await self._serve(ws)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
                pool.record("close", conn=self.number, data=repr(exc))
                log.warning("stream disconnected", conn=self.number, error=repr(exc))
            finally:
                self._ws = None
                self.ready.clear()
            pool.reconnects += 1
            # The backoff starts over only after a connection that lasted: a server that
            # accepts and drops at once must not see a reconnect storm (Binance also limits
            # connection attempts per IP).
            if self.opened_at and time.monotonic() - self.opened_at > pool.reconnect_max_s:
                attempt = 0
            delay = Backoff(pool.reconnect_base_s, pool.reconnect_max_s).delay(attempt)
            attempt += 1
            await asyncio.sleep(delay)

    async def _serve(self, ws: ClientConnection) -> None:
        reader = asyncio.create_task(self._read(ws), name=f"ws-reader-{self.number}")
        try:
            while True:
                self._wake.clear()
                await self._sync_subscriptions(ws)
                if self.subscribed == self.streams and self._answered >= self._last_sent:
                    self.ready.set()
                if time.monotonic() - self.opened_at > self.pool.max_age_s:
                    self.retire.set()
                waker = asyncio.create_task(self._wake.wait(), name=f"ws-wake-{self.number}")
                try:
                    await asyncio.wait(
                        [reader, waker], timeout=1.0, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    waker.cancel()
                if reader.done():
                    reader.result()  # re-raise why the connection ended
                    return
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _sync_subscriptions(self, ws: ClientConnection) -> None:
        pool = self.pool
        for subscribe, streams in (
            (False, sorted(self.subscribed - self.streams)),
            (True, sorted(self.streams - self.subscribed)),
        ):
            for start in range(0, len(streams), pool.streams_per_message):
                chunk = streams[start : start + pool.streams_per_message]
                await self._pace()
                self._next_id += 1
                self._last_sent = self._next_id
                message = pool.exchange.subscribe_message(chunk, self._next_id, subscribe)
                await ws.send(message)
                pool.record("send", conn=self.number, data=message)
                if subscribe:
                    self.subscribed.update(chunk)
                else:
                    self.subscribed.difference_update(chunk)

    async def _pace(self) -> None:
        """At most ``messages_per_second`` method messages in any one-second window."""
        limit = max(1, int(self.pool.messages_per_second))
        now = time.monotonic()
        self._sent_at = [t for t in self._sent_at if now - t < 1.0]
        if len(self._sent_at) >= limit:
            await asyncio.sleep(1.0 - (now - self._sent_at[0]))
        self._sent_at.append(time.monotonic())

    async def _read(self, ws: ClientConnection) -> None:
        pool = self.pool
        parse = pool.exchange.parse_frame
        async for data in ws:
            receive_ms = time.time_ns() // 1_000_000
            if pool.recorder is not None:
                pool.record("ws", conn=self.number, data=data if isinstance(data, str) else "")
            try:
                frame = parse(data)
            except InvalidMessageError as exc:
                pool.malformed += 1
                log.warning("malformed frame", conn=self.number, error=str(exc)[:200])
                continue
            if isinstance(frame, DepthEvent):
                if self.hold:
                    self.held.append((frame, receive_ms))
                else:
                    await pool.handle(frame, receive_ms)
            elif isinstance(frame, Control):
                if frame.kind == "shutdown":
                    log.info("server shutdown announced", conn=self.number)
                    self.retire.set()
                    self._wake.set()
                elif frame.kind == "reply" and frame.detail.isdigit():
                    self._answered = max(self._answered, int(frame.detail))
                    self._wake.set()
                elif frame.kind == "error":
                    log.warning("stream method error", conn=self.number, detail=frame.detail)


class StreamPool:
    """The connections for a set of streams: ``await pool.set_streams({...})``.

    Every diff event goes to ``handle(event, receive_ms)``.
    """

    def __init__(
        self,
        exchange: Exchange,
        ws_url: str,
        handle: Handler,
        *,
        streams_per_connection: int,
        streams_per_message: int = 200,
        messages_per_second: float = 3.0,
        reconnect_base_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        max_age_s: float | None = None,
        open_timeout_s: float = 10.0,
        max_frame_bytes: int = 16 * 1024 * 1024,
        recorder: Recorder | None = None,
    ) -> None:
        self.exchange = exchange
        self.ws_url = ws_url
        self.handle = handle
        self.streams_per_connection = min(
            streams_per_connection, exchange.max_streams_per_connection
        )
        self.streams_per_message = streams_per_message
        self.messages_per_second = min(messages_per_second, exchange.max_messages_per_second)
        self.reconnect_base_s = reconnect_base_s
        self.reconnect_max_s = reconnect_max_s
        # Hand over well before the exchange cuts the connection.
        self.max_age_s = max_age_s if max_age_s is not None else exchange.max_connection_s - 900
        self.open_timeout_s = open_timeout_s
        self.max_frame_bytes = max_frame_bytes
        self.recorder = recorder
        self.reconnects = 0
        self.handovers = 0
        self.malformed = 0
        self._connections: list[_Connection] = []
        self._numbers = 0
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def connections(self) -> int:
        return len(self._connections)

    def record(self, kind: str, **fields: str | int) -> None:
        if self.recorder is not None:
            self.recorder.write(kind, **fields)  # type: ignore[arg-type]

    async def __aenter__(self) -> StreamPool:
        self._supervisor = asyncio.create_task(self._supervise(), name="ws-supervisor")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self._connections))
        self._connections.clear()

    def set_streams(self, streams: set[str]) -> None:
        """Carry exactly ``streams``: keep each where it is, fill connections with room, and
        open new connections for the rest."""
        assigned: set[str] = set()
        for conn in self._connections:
            keep = conn.streams & streams
            conn.want(keep)
            assigned |= keep
        todo = sorted(streams - assigned)
        for conn in self._connections:
            room = self.streams_per_connection - len(conn.streams)
            if room > 0 and todo:
                conn.want(conn.streams | set(todo[:room]))
                todo = todo[room:]
        while todo:
            chunk, todo = todo[: self.streams_per_connection], todo[self.streams_per_connection :]
            self._connections.append(self._open(set(chunk), hold=False))
        # A connection left with nothing to carry is closed by the supervisor.

    def _open(self, streams: set[str], *, hold: bool) -> _Connection:
        self._numbers += 1
        return _Connection(self, self._numbers, streams, hold=hold)

    async def watch(self, stop: asyncio.Event) -> None:
        """Return when ``stop`` is set; raise what broke a connection for good (a bug: the
        service fails loudly and is restarted rather than silently losing streams)."""
        assert self._supervisor is not None
        stopped = asyncio.create_task(stop.wait(), name="ws-watch-stop")
        try:
            await asyncio.wait([self._supervisor, stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if self._supervisor.done():
            self._supervisor.result()

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            for conn in list(self._connections):
                if conn.task.done():
                    conn.task.result()  # a connection task only ends by cancel or a bug
                if not conn.streams:
                    self._connections.remove(conn)
                    await conn.close()
                elif conn.retire.is_set():
                    await self._hand_over(conn)

    async def _hand_over(self, old: _Connection) -> None:
        """Make before break: a new connection with the same streams takes over from ``old``."""
        log.info("connection handover", conn=old.number, streams=len(old.streams))
        new = self._open(old.streams, hold=True)
        self._connections[self._connections.index(old)] = new
        try:
            async with asyncio.timeout(self.open_timeout_s * 3):
                await new.ready.wait()
        except TimeoutError:
            log.warning("handover connection not ready; switching anyway", conn=new.number)
        new.want(old.streams | new.streams)
        await old.close()
        await new.release()
        self.handovers += 1
