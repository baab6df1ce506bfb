"""``fairprice-sim``: the Binance-compatible exchange as a service.

The exchange API (REST, WebSocket, /control) listens on ``[simulator] port`` (default 8090);
/healthz, /readyz and /metrics on ``[simulator.http] port`` (default 8085).
"""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CollectorRegistry

from fairprice.common.health import HealthServer, Readiness
from fairprice.common.lifecycle import install_signal_handlers, run_service
from fairprice.simulator.server import run_simulator
from fairprice.simulator.settings import SimulatorSettings

__all__ = ["main", "run"]


async def run(
    settings: SimulatorSettings,
    *,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    registry: CollectorRegistry | None = None,
) -> None:
    stop = stop or install_signal_handlers()
    registry = registry or CollectorRegistry()
    readiness = Readiness("exchange")
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(HealthServer(settings.simulator.http, registry, readiness))
        await stack.enter_async_context(run_simulator(settings.simulator, registry))
        readiness.set("exchange", True)
        if ready is not None:
            ready.set()
        await stop.wait()
        readiness.set("exchange", False)


def main() -> None:
    run_service("sim", SimulatorSettings, run)


if __name__ == "__main__":
    main()
