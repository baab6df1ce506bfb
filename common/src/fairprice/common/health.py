"""The HTTP endpoints every service serves on one port, on aiohttp.

- ``/healthz``: 200 while the event loop answers (the process is alive).
- ``/readyz``: 200 when the service is connected and caught up, else 503 with the reasons.
- ``/metrics``: the service's prometheus-client registry (passed in, never the global one, so
  several services can run in one test process).
"""

from __future__ import annotations

from types import TracebackType

import prometheus_client
from aiohttp import web
from prometheus_client import CollectorRegistry

from fairprice.common.errors import SettingsError
from fairprice.common.logs import get_logger
from fairprice.common.settings import HttpSettings

__all__ = ["HealthServer", "Readiness"]

log = get_logger(__name__)


class Readiness:
    """Named conditions that must all hold for ``/readyz`` to answer 200.

    A service declares what it waits for (``readiness.set("nats", False)``) and flips each as
    its state changes; ``/readyz`` lists the ones that are not met.
    """

    def __init__(self, *conditions: str) -> None:
        self._state: dict[str, bool] = dict.fromkeys(conditions, False)

    def set(self, condition: str, ok: bool = True) -> None:
        self._state[condition] = ok

    @property
    def ready(self) -> bool:
        return all(self._state.values())

    def unmet(self) -> list[str]:
        return [name for name, ok in self._state.items() if not ok]


class HealthServer:
    """``async with HealthServer(settings, registry, readiness) as server:`` serves the three
    endpoints until the block exits; ``server.port`` is the bound port (useful with port 0)."""

    def __init__(
        self, settings: HttpSettings, registry: CollectorRegistry, readiness: Readiness
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._readiness = readiness
        self._runner: web.AppRunner | None = None
        self.port = settings.port

    async def __aenter__(self) -> HealthServer:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._settings.host, self._settings.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            # A port in use (or a host not ours) is the http setting that cannot be served.
            host, port = self._settings.host, self._settings.port
            reason = str(exc.strerror or exc).rpartition(": ")[2]
            raise SettingsError(
                f"http.port {port}: cannot listen on {host}:{port}: {reason}"
            ) from exc
        self.port = int(self._runner.addresses[0][1])
        log.info("http listening", host=self._settings.host, port=self.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        if self._readiness.ready:
            return web.json_response({"status": "ready"})
        return web.json_response(
            {"status": "not ready", "waiting_for": self._readiness.unmet()}, status=503
        )

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = prometheus_client.generate_latest(self._registry)
        headers = {"Content-Type": prometheus_client.CONTENT_TYPE_LATEST}
        return web.Response(body=body, headers=headers)
