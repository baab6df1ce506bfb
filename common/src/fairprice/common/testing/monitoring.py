"""Start and stop the real Prometheus and Alertmanager binaries (Debian's ``prometheus`` and
``prometheus-alertmanager``) for tests, beside the nats-server and influxd runners.

Both bind port 0 on 127.0.0.1 and their actual address is read from their own log ("Listening
on" address=...), their data lives in the work folder, and ``restart()`` brings a server back on
the same port with the same data (an Alertmanager outage in a test). ``run_webhook_receiver``
is the other end of Alertmanager: the notifications it sends, as a receiver sees them.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from fairprice.common.local_servers import _Process, _workdir, find_binary

__all__ = [
    "AlertmanagerServer",
    "PrometheusServer",
    "WebhookReceiver",
    "run_alertmanager",
    "run_prometheus",
    "run_webhook_receiver",
]

_LISTENING = re.compile(r'msg="Listening on" address=[\d.]+:(\d+)')
_FATAL = re.compile(r"level=(error|fatal)|panic")


@dataclass
class PrometheusServer(_Process):
    """``prometheus`` scraping ``targets`` (job -> ``host:port`` list) and evaluating
    ``rule_files``; alerts go to ``alertmanagers`` (``host:port``) when given."""

    targets: Mapping[str, Sequence[str]] = field(default_factory=dict)
    rule_files: Sequence[Path] = ()
    alertmanagers: Sequence[str] = ()
    interval_s: float = 1.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        interval = f"{int(self.interval_s * 1000)}ms"
        config: dict[str, object] = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(hosts)}]}
                for job, hosts in self.targets.items()
            ],
        }
        if self.alertmanagers:
            config["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": list(self.alertmanagers)}]}]
            }
        path = self.workdir / "prometheus.yml"
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        return path

    async def start(self, within: float = 30.0) -> None:
        self._spawn(
            [
                find_binary("prometheus"),
                f"--config.file={self._write_config()}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=info",
            ]
        )
        self.port = int((await self._wait_for(_LISTENING, within)).group(1))
        await self._wait_for(re.compile(r"Server is ready to receive web requests"), within)

    async def restart(self, within: float = 30.0) -> None:
        self.stop()
        await self.start(within)


@dataclass
class AlertmanagerServer(_Process):
    """``prometheus-alertmanager`` (no cluster) routing every alert to ``webhook_url`` when
    given, grouped per alert so that each one is delivered on its own."""

    webhook_url: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        receiver: dict[str, object] = {"name": "default"}
        if self.webhook_url is not None:
            receiver["webhook_configs"] = [{"url": self.webhook_url, "send_resolved": True}]
        config = {
            "route": {
                "receiver": "default",
                "group_by": ["..."],
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "24h",
            },
            "receivers": [receiver],
        }
        path = self.workdir / "alertmanager.yml"
        path.write_text(json.dumps(config, indent=2))
        return path

    async def start(self, within: float = 30.0) -> None:
        self._spawn(
            [
                find_binary("prometheus-alertmanager"),
                f"--config.file={self._write_config()}",
                f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",  # one instance: no gossip port
            ]
        )
        self.port = int((await self._wait_for(_LISTENING, within)).group(1))

    async def restart(self, within: float = 30.0) -> None:
        self.stop()
        await self.start(within)


@contextlib.asynccontextmanager
async def run_prometheus(
    workdir: Path | None = None,
    *,
    targets: Mapping[str, Sequence[str]] | None = None,
    rule_files: Sequence[Path] = (),
    alertmanagers: Sequence[str] = (),
    interval_s: float = 1.0,
) -> AsyncIterator[PrometheusServer]:
    """A running Prometheus on a free port of 127.0.0.1, scraping ``targets`` every
    ``interval_s`` seconds; stopped on exit."""
    with _workdir(workdir, "fairprice-prometheus-") as path:
        server = PrometheusServer(
            name="prometheus",
            workdir=path,
            log_path=path / "prometheus.log",
            fatal_pattern=_FATAL,
            targets=targets or {},
            rule_files=rule_files,
            alertmanagers=alertmanagers,
            interval_s=interval_s,
        )
        try:
            await server.start()
            yield server
        finally:
            server.stop()


@contextlib.asynccontextmanager
async def run_alertmanager(
    workdir: Path | None = None, *, webhook_url: str | None = None
) -> AsyncIterator[AlertmanagerServer]:
    """A running Alertmanager on a free port of 127.0.0.1; stopped on exit."""
    with _workdir(workdir, "fairprice-alertmanager-") as path:
        server = AlertmanagerServer(
            name="alertmanager",
            workdir=path,
            log_path=path / "alertmanager.log",
            fatal_pattern=_FATAL,
            webhook_url=webhook_url,
        )
        try:
            await server.start()
            yield server
        finally:
            server.stop()


@dataclass
class WebhookReceiver:
    """Alertmanager's webhook notifications: ``(status, labels)`` of each alert in each."""

    url: str = ""
    received: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        for alert in body["alerts"]:
            self.received.append((alert["status"], alert["labels"]))
        return web.Response()


@contextlib.asynccontextmanager
async def run_webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    """An HTTP receiver of Alertmanager webhooks on a free port of 127.0.0.1."""
    receiver = WebhookReceiver()
    app = web.Application()
    app.router.add_post("/hook", receiver._handle)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        yield receiver
    finally:
        await runner.cleanup()
