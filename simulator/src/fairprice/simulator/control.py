"""The control API for tests and demos, under ``/control/`` on the exchange port.

- ``GET /control/status``: connections, active symbols, each built book's update-id range.
- ``GET /control/book?symbol=X&update_id=N&limit=20``: the true book at update id N (default:
  now), in the shape of a depth snapshot; 404 unknown symbol, 410 outside the kept history.
- ``GET /control/faults``, ``POST /control/faults`` (a ``FaultPlan`` JSON object),
  ``DELETE /control/faults`` (back to the settings' faults).
- ``POST /control/disconnect`` ``{"count": null, "symbol": null, "abort": false}``.
- ``POST /control/shutdown`` ``{"close_after_s": 1.0}``: the ``serverShutdown`` event.
- ``POST /control/weights/reset``: forget every IP's used weight and bans.
- ``POST /control/drift`` ``{"symbol": "BTCUSDT", "percent": 1.5, "steps": 30}``: move the
  symbol's price by ``percent`` over the next ``steps`` ticks (a crossing made on purpose).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fairprice.simulator.faults import FaultPlan
from fairprice.simulator.market import HistoryError

if TYPE_CHECKING:
    from fairprice.simulator.server import Simulator

__all__ = ["DisconnectRequest", "DriftRequest", "ShutdownRequest", "control_routes"]


class DisconnectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int | None = Field(default=None, ge=0)
    symbol: str | None = None
    abort: bool = False
    """True: drop the TCP connection without a close frame."""


class ShutdownRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    close_after_s: float = Field(default=1.0, ge=0)


class DriftRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    symbol: str
    percent: float = Field(ge=-50, le=100)
    steps: int = Field(default=10, ge=1)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _body(request: web.Request) -> Any:
    if not request.can_read_body:
        return {}
    return await request.json()


def control_routes(sim: Simulator) -> list[web.RouteDef]:
    async def status(_request: web.Request) -> web.Response:
        return web.json_response(sim.status())

    async def book(request: web.Request) -> web.Response:
        symbol = request.query.get("symbol", "").upper()
        try:
            update_id = int(request.query["update_id"]) if "update_id" in request.query else None
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            return _error(400, "update_id and limit must be integers")
        if symbol not in sim.market:
            return _error(404, f"unknown symbol {symbol!r}")
        try:
            view = sim.true_book(symbol, update_id, limit)
        except HistoryError as exc:
            return _error(410, str(exc))
        return web.json_response(view.to_json())

    async def get_faults(_request: web.Request) -> web.Response:
        return web.json_response(sim.faults.state())

    async def post_faults(request: web.Request) -> web.Response:
        try:
            sim.set_faults(FaultPlan.model_validate(await _body(request)))
        except (ValidationError, ValueError) as exc:
            return _error(400, str(exc))
        return web.json_response(sim.faults.state())

    async def delete_faults(_request: web.Request) -> web.Response:
        sim.clear_faults()
        return web.json_response(sim.faults.state())

    async def disconnect(request: web.Request) -> web.Response:
        try:
            body = DisconnectRequest.model_validate(await _body(request))
        except (ValidationError, ValueError) as exc:
            return _error(400, str(exc))
        count = sim.disconnect(body.count, body.symbol, abort=body.abort)
        return web.json_response({"disconnected": count})

    async def shutdown(request: web.Request) -> web.Response:
        try:
            body = ShutdownRequest.model_validate(await _body(request))
        except (ValidationError, ValueError) as exc:
            return _error(400, str(exc))
        return web.json_response({"notified": sim.server_shutdown(body.close_after_s)})

    async def drift(request: web.Request) -> web.Response:
        try:
            body = DriftRequest.model_validate(await _body(request))
        except (ValidationError, ValueError) as exc:
            return _error(400, str(exc))
        symbol = body.symbol.upper()
        if symbol not in sim.market:
            return _error(404, f"unknown symbol {symbol!r}")
        return web.json_response({"ticks": sim.market.book(symbol).drift(body.percent, body.steps)})

    async def reset_weights(_request: web.Request) -> web.Response:
        sim.reset_weights()
        return web.json_response({"reset": True})

    return [
        web.get("/control/status", status),
        web.get("/control/book", book),
        web.get("/control/faults", get_faults),
        web.post("/control/faults", post_faults),
        web.delete("/control/faults", delete_faults),
        web.post("/control/disconnect", disconnect),
        web.post("/control/drift", drift),
        web.post("/control/shutdown", shutdown),
        web.post("/control/weights/reset", reset_weights),
    ]
