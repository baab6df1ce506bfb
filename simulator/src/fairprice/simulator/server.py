"""The simulator as one object: the exchange's HTTP + WebSocket server and the market clock.

``async with run_simulator(settings) as sim:`` serves REST and WebSocket on ``sim.port`` (0 in
settings: a free port) until the block exits; ``sim.rest_url`` / ``sim.ws_url`` are the base
URLs a crawler takes in place of ``https://api.binance.com`` / ``wss://stream.binance.com:9443``,
and the methods below inject faults and read the true book, as the control API does over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from fairprice.common.logs import get_logger
from fairprice.simulator.control import control_routes
from fairprice.simulator.faults import FaultPlan, Faults
from fairprice.simulator.market import BookView, Market, SymbolBook
from fairprice.simulator.metrics import SimulatorMetrics
from fairprice.simulator.rest import RestApi
from fairprice.simulator.settings import SimulatorSection
from fairprice.simulator.streams import Hub
from fairprice.simulator.weights import WeightLimiter

__all__ = ["Simulator", "run_simulator"]

log = get_logger(__name__)

_MAX_URL = 64 * 1024


class Simulator:
    def __init__(
        self, settings: SimulatorSection | None = None, registry: CollectorRegistry | None = None
    ) -> None:
        self.settings = settings or SimulatorSection()
        self.registry = registry or CollectorRegistry()
        self.metrics = SimulatorMetrics(self.registry)
        self.market = Market(self.settings.market)
        self.faults = Faults(self.settings.faults, self.settings.market.seed)
        self.limiter = WeightLimiter(
            self.settings.weight_limit,
            self.settings.weight_window_s,
            self.settings.ban_base_s,
            self.settings.ban_max_s,
        )
        self.hub = Hub(self.settings, self.market, self.faults, self.metrics)
        self._rest = RestApi(self.hub, self.market, self.faults, self.limiter, self.metrics)
        self._runner: web.AppRunner | None = None
        self._clock: asyncio.Task[None] | None = None
        self.port = self.settings.port

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        # A combined-stream URL naming 1024 streams is ~30 kB: more than aiohttp's default line.
        app = web.Application(
            middlewares=[self._rest.middleware], handler_args={"max_line_size": _MAX_URL}
        )
        app.add_routes(self._rest.routes())
        app.router.add_get("/ws", self._ws_raw)
        app.router.add_get("/ws/{streams:.+}", self._ws_raw)
        app.router.add_get("/stream", self._ws_combined)
        if self.settings.control_api:
            app.add_routes(control_routes(self))
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            raise
        self.port = int(self._runner.addresses[0][1])
        self._clock = asyncio.create_task(self.hub.run_clock(), name="simulator-clock")
        log.info(
            "simulator listening",
            host=self.settings.host,
            port=self.port,
            symbols=len(self.market.specs),
            seed=self.settings.market.seed,
        )

    async def stop(self) -> None:
        self._rest.stopping.set()
        if self._clock is not None:
            self._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock
            self._clock = None
        await self.hub.aclose()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _ws_raw(self, request: web.Request) -> web.StreamResponse:
        streams = request.match_info.get("streams", "")
        return await self.hub.handle(request, [s for s in streams.split("/") if s], False)

    async def _ws_combined(self, request: web.Request) -> web.StreamResponse:
        streams = request.query.get("streams", "")
        return await self.hub.handle(request, [s for s in streams.split("/") if s], True)

    # ---- where it is -----------------------------------------------------------------

    @property
    def _host(self) -> str:
        host = self.settings.host
        return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host

    @property
    def rest_url(self) -> str:
        """Base REST URL, e.g. ``http://127.0.0.1:8090`` (paths ``/api/v3/...`` below it)."""
        return f"http://{self._host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """Base WebSocket URL, e.g. ``ws://127.0.0.1:8090`` (``/ws/...``, ``/stream?...``)."""
        return f"ws://{self._host}:{self.port}"

    # ---- truth and faults ------------------------------------------------------------

    def book(self, symbol: str) -> SymbolBook:
        """The live book of ``symbol`` (``KeyError`` if unknown)."""
        return self.market.book(symbol)

    def true_book(self, symbol: str, update_id: int | None = None, depth: int = 20) -> BookView:
        """The book of ``symbol`` at ``update_id`` (default: now), ``depth`` levels a side.

        At an id inside an event's ``U..u`` it is the book before that event. Raises
        ``KeyError`` for an unknown symbol, ``HistoryError`` outside the kept history.
        """
        book = self.market.book(symbol)
        if update_id is None:
            return book.top(depth)
        return book.book_at(update_id, depth)

    def set_faults(self, plan: FaultPlan | None = None, **fields: Any) -> None:
        """Add faults: ``sim.set_faults(drop_events=3, symbol="BTCUSDT")``."""
        plan = plan if plan is not None else FaultPlan(**fields)
        self.faults.apply(plan)
        if plan.trend_ticks is not None:
            if plan.symbol is not None and plan.symbol.upper() not in self.market:
                raise ValueError(f"unknown symbol {plan.symbol!r}")
            books = (
                [self.market.book(plan.symbol.upper())]
                if plan.symbol is not None
                else list(self.market.built().values())
            )
            for book in books:
                book.trend = plan.trend_ticks

    def clear_faults(self) -> None:
        self.faults.reset()
        for book in self.market.built().values():
            book.trend = 0

    def disconnect(
        self, count: int | None = None, symbol: str | None = None, *, abort: bool = False
    ) -> int:
        """Close ``count`` connections (default all), or those streaming ``symbol``."""
        return self.hub.disconnect(count, symbol.upper() if symbol else None, abort)

    def server_shutdown(self, close_after_s: float = 1.0) -> int:
        """Send ``serverShutdown`` to every connection and close them ``close_after_s`` later."""
        return self.hub.server_shutdown(close_after_s)

    def reset_weights(self) -> None:
        self.limiter.clear()

    def status(self) -> dict[str, Any]:
        """Connections, and every book built so far with its update-id range."""
        active = set(self.hub.active_symbols())
        books = {}
        for symbol, book in self.market.built().items():
            oldest, newest = book.history_range()
            books[symbol] = {
                "lastUpdateId": newest,
                "oldestUpdateId": oldest,
                "active": symbol in active,
                "trend": book.trend,
            }
        return {
            "connections": len(self.hub.connections),
            "symbols": len(self.market.specs),
            "active_symbols": len(active),
            "books": books,
        }


@contextlib.asynccontextmanager
async def run_simulator(
    settings: SimulatorSection | None = None, registry: CollectorRegistry | None = None
) -> AsyncIterator[Simulator]:
    """``async with run_simulator(SimulatorSection(port=0)) as sim:`` a running simulator."""
    sim = Simulator(settings, registry)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()
