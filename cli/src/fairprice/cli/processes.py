"""The whole pipeline as real local processes, under a program's control.

``Pipeline`` starts ``nats-server -js`` and ``influxd`` on free loopback ports, then the
simulator, storer, converter and crawler as separate processes (``python -m
fairprice.<service>``), each configured only through ``FAIRPRICE_*`` environment variables and
an empty config file (so the repository's ``clusters_dev.toml`` never leaks in). End-to-end
tests, fault tests and ``bench/end_to_end.py`` use it to start, kill -9, restart and stop any
part, and read each service's health and metrics on its own port; ``spawn`` adds any other
program (bench/peer.py runs the peer that way).

Nothing it starts outlives it, whatever ends it: ``async with`` stops every process it started
(services and spawned programs with SIGTERM, SIGKILL after their grace period; the servers
last), and a harness that dies without that (SIGKILL, SIGTERM's default action, a crash)
takes its children with it: each gets SIGKILL from the kernel when the harness's thread that
started it ends (``PR_SET_PDEATHSIG``; nats-server and influxd get SIGTERM, see
``fairprice.common.local_servers``). A SIGKILL, not a SIGTERM: a service asked to stop while
the NATS it would drain into is gone too must not be able to linger. Start a ``Pipeline`` from
a thread that lives as long as it does (the event loop's thread).

``service_env`` is the one place that knows how to point a service at NATS, InfluxDB and the
simulator; ``fairprice run``/``demo`` (``fairprice.cli.local``) use it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import secrets
import signal
import socket
import sys
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx
from pydantic import SecretStr

from fairprice.common.local_servers import InfluxServer, NatsServer, run_influxd, run_nats
from fairprice.common.nats_config import local_users
from fairprice.common.settings import NatsSettings

__all__ = [
    "INFLUX_READER",
    "INFLUX_USERS",
    "SERVICES",
    "Pipeline",
    "ServiceProcess",
    "free_port",
    "influx_env",
    "influx_passwords",
    "service_env",
]

INFLUX_READER = "reader"
"""InfluxDB's read-only user: Grafana, the price API and the tests' queries."""

SERVICES = ("simulator", "storer", "converter", "crawler")
"""Start order: the exchange first, consumers before producers; stopping goes in reverse."""

_SECTION = {
    "simulator": "SIMULATOR",
    "storer": "STORER",
    "converter": "CONVERTER",
    "crawler": "CRAWLER",
    "operator": "OPERATOR",
    "api": "API",
}


_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
"""Loaded here, not after the fork: a child between fork and exec should do as little as it can."""


def _killed_with(parent: int) -> Callable[[], None]:
    """A ``preexec_fn``: SIGKILL this child when its parent's forking thread ends; a parent
    that is already gone (it died between the fork and the ``prctl``) ends the child at once."""

    def preexec() -> None:
        if _LIBC is None:
            return
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def free_port() -> int:
    """A port that was free a moment ago (the OS may reuse it; good enough on loopback)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(
    service: str,
    *,
    nats_url: str,
    nats_password: str | None = None,
    influx_url: str | None = None,
    influx_passwords: Mapping[str, str] | None = None,
    http_port: int | None = None,
    simulator_url: str | None = None,
    exchange: str | None = None,
    symbols: list[str] | None = None,
    log_format: str = "json",
) -> dict[str, str]:
    """The ``FAIRPRICE_*`` variables that place ``service`` in a local pipeline; with
    ``nats_password``, it connects as its own NATS user (named as the service)."""
    section = _SECTION[service]
    env = {
        "FAIRPRICE_NATS__SERVERS": json.dumps([nats_url]),
        "FAIRPRICE_LOG__FORMAT": log_format,
    }
    if nats_password is not None:
        env["FAIRPRICE_NATS__USER"] = service
        env["FAIRPRICE_NATS__PASSWORD"] = nats_password
    if http_port is not None:
        env[f"FAIRPRICE_{section}__HTTP__PORT"] = str(http_port)
        env[f"FAIRPRICE_{section}__HTTP__HOST"] = "127.0.0.1"
    if influx_url is not None:
        env["FAIRPRICE_INFLUX__URL"] = influx_url
    if influx_passwords is not None:
        env |= influx_env(service, influx_passwords)
    if service == "crawler":
        if simulator_url is not None:
            host = simulator_url.removeprefix("http://")
            env["FAIRPRICE_CRAWLER__REST_URL"] = f"http://{host}"
            env["FAIRPRICE_CRAWLER__WS_URL"] = f"ws://{host}"
        if exchange is not None:
            env["FAIRPRICE_CRAWLER__EXCHANGE"] = exchange
        if symbols is not None:
            env["FAIRPRICE_CRAWLER__SYMBOLS"] = json.dumps(symbols)
    if service == "simulator" and symbols is not None:
        env["FAIRPRICE_SIMULATOR__MARKET__SYMBOLS"] = json.dumps(symbols)
        env["FAIRPRICE_SIMULATOR__MARKET__GENERATED_SYMBOLS"] = "0"
    return env


INFLUX_USERS = {"storer": "storer", "api": INFLUX_READER}
"""Each service's InfluxDB user (``fairprice.storer.provisioning``: WRITE, READ)."""


def influx_env(service: str, passwords: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``service``'s InfluxDB user; the storer's start-up also gets the
    admin's, to create the database and the users (``passwords``: user -> password)."""
    user = INFLUX_USERS.get(service)
    if user is None:
        return {}
    env = {"FAIRPRICE_INFLUX__USERNAME": user, "FAIRPRICE_INFLUX__PASSWORD": passwords[user]}
    if service == "storer":
        env["FAIRPRICE_STORER__PROVISIONING__ADMIN_USERNAME"] = InfluxServer.ADMIN
        env["FAIRPRICE_STORER__PROVISIONING__ADMIN_PASSWORD"] = passwords[InfluxServer.ADMIN]
        env["FAIRPRICE_STORER__PROVISIONING__READER_USERNAME"] = INFLUX_READER
        env["FAIRPRICE_STORER__PROVISIONING__READER_PASSWORD"] = passwords[INFLUX_READER]
    return env


def influx_passwords(reader_password: str | None = None) -> dict[str, str]:
    """Fresh passwords of InfluxDB's admin, the storer and the reader (``reader_password``
    when given: the one the configuration holds for ``fairprice`` commands)."""
    passwords = {
        u: secrets.token_urlsafe(18) for u in (InfluxServer.ADMIN, "storer", INFLUX_READER)
    }
    if reader_password is not None:
        passwords[INFLUX_READER] = reader_password
    return passwords


@dataclass
class ServiceProcess:
    """One running (or stopped) replica of a service."""

    name: str
    index: int
    port: int
    env: dict[str, str]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    argv: list[str] | None = None
    """A spawned program's command line; None for a fairprice service."""
    grace_s: float = 30.0
    """How long ``stop`` waits after SIGTERM before SIGKILL."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class Pipeline:
    """``async with Pipeline(workdir, symbols=[...]) as p:`` runs every part; see module doc.

    ``env`` adds or overrides variables per service, e.g.
    ``{"converter": {"FAIRPRICE_CONVERTER__SMA_FAST_S": "1"}}``; the key ``"*"`` applies to
    every service (a service's own key wins).

    NATS holds every service's user with its permissions (``fairprice.common.nats_config``),
    and each service connects as its own; ``nats_settings()`` connects the program as
    ``ADMIN`` (every right) or as a service's user.
    """

    ADMIN = "harness"

    def __init__(
        self,
        workdir: Path,
        *,
        symbols: list[str],
        env: dict[str, dict[str, str]] | None = None,
        replicas: dict[str, int] | None = None,
        exchange: str = "sim",
    ) -> None:
        self.workdir = workdir
        self.symbols = symbols
        self.exchange = exchange
        self._extra = env or {}
        self._replicas = {name: 1 for name in SERVICES} | (replicas or {})
        self._stack = contextlib.AsyncExitStack()
        self.nats: NatsServer
        self.influxd: InfluxServer
        self.influx_passwords: dict[str, str] = {}
        self.simulator_port = free_port()
        self.processes: list[ServiceProcess] = []
        self._config = workdir / "empty.toml"

    @property
    def simulator_url(self) -> str:
        return f"http://127.0.0.1:{self.simulator_port}"

    def nats_settings(self, user: str = ADMIN) -> NatsSettings:
        """Settings that connect to the pipeline's NATS as ``user``."""
        return NatsSettings(
            servers=[self.nats.url],
            reconnect_wait_s=0.2,
            user=user,
            password=SecretStr(self.nats.passwords[user]),
        )

    def influx_url(self, user: str = INFLUX_READER) -> str:
        """InfluxDB's URL with ``user``'s credentials in it (httpx sends them as basic auth)."""
        password = urllib.parse.quote(self.influx_passwords[user], safe="")
        return self.influxd.url.replace("http://", f"http://{user}:{password}@", 1)

    def replicas(self, name: str) -> list[ServiceProcess]:
        return [p for p in self.processes if p.name == name]

    async def __aenter__(self) -> Pipeline:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._config.write_text("")
        try:
            users = local_users(admins=(self.ADMIN,))
            self.nats = await self._stack.enter_async_context(
                run_nats(self.workdir / "nats", config=users.config, passwords=users.passwords)
            )
            self.influx_passwords = influx_passwords()
            self.influxd = await self._stack.enter_async_context(
                run_influxd(
                    self.workdir / "influxd",
                    admin_password=self.influx_passwords[InfluxServer.ADMIN],
                )
            )
            # Every replica starts at once (imports dominate a start; on 2 cores that halves
            # the wait); nothing depends on the order: each service creates the streams and
            # waits for what it needs, and nothing is published before the crawler syncs.
            async with asyncio.TaskGroup() as tg:
                for name in SERVICES:
                    for _ in range(self._replicas[name]):
                        tg.create_task(self.start(name))
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Spawned programs first (they use the services and servers), newest first.
        for process in reversed([p for p in self.processes if p.argv is not None]):
            await self.stop(process, process.grace_s)
        for name in reversed(SERVICES):
            for process in self.replicas(name):
                await self.stop(process, process.grace_s)
        await self._stack.aclose()

    def _env(self, name: str, port: int) -> dict[str, str]:
        env = service_env(
            name,
            nats_url=self.nats.url,
            nats_password=self.nats.passwords.get(name),
            influx_url=self.influxd.url,
            influx_passwords=self.influx_passwords,
            http_port=port,
            simulator_url=self.simulator_url,
            exchange=self.exchange,
            symbols=self.symbols,
        )
        if name == "simulator":
            env["FAIRPRICE_SIMULATOR__PORT"] = str(self.simulator_port)
            env["FAIRPRICE_SIMULATOR__HOST"] = "127.0.0.1"
        return env | self._extra.get("*", {}) | self._extra.get(name, {})

    async def start(self, name: str) -> ServiceProcess:
        """Start one more replica of ``name`` and wait until it answers /healthz."""
        index = len(self.replicas(name))
        port = free_port()
        process = ServiceProcess(
            name=name,
            index=index,
            port=port,
            env=self._env(name, port),
            log_path=self.workdir / "logs" / f"{name}-{index}.log",
        )
        self.processes.append(process)
        await self.restart(process)
        return process

    async def spawn(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        port: int = 0,
        grace_s: float = 30.0,
    ) -> ServiceProcess:
        """Start another program beside the pipeline (its log in ``logs/<name>.log``), stopped
        and killed like the services; no health check: waiting for it is the caller's part."""
        process = ServiceProcess(
            name=name,
            index=0,
            port=port,
            env=env or {},
            log_path=self.workdir / "logs" / f"{name}.log",
            argv=argv,
            grace_s=grace_s,
        )
        self.processes.append(process)
        await self._exec(process)
        return process

    async def restart(self, process: ServiceProcess) -> None:
        """(Re)start ``process`` with the same port and settings; a service is waited for
        until it answers /healthz."""
        await self._exec(process)
        if process.argv is None:
            await self.wait_for(process, "/healthz", within=30)

    async def _exec(self, process: ServiceProcess) -> None:
        process.log_path.parent.mkdir(parents=True, exist_ok=True)
        clean = {k: v for k, v in os.environ.items() if not k.startswith("FAIRPRICE_")}
        argv = process.argv or [sys.executable, "-m", f"fairprice.{process.name}"]
        with process.log_path.open("ab") as log:
            process.proc = await asyncio.create_subprocess_exec(
                *argv,
                env=clean | {"FAIRPRICE_CONFIG": str(self._config)} | process.env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                preexec_fn=_killed_with(os.getpid()),
            )

    async def kill(self, process: ServiceProcess) -> None:
        """SIGKILL: no goodbye, no flush; what the process held is its problem."""
        if process.running:
            assert process.proc is not None
            process.proc.kill()
            await process.proc.wait()

    async def stop(self, process: ServiceProcess, within: float = 30.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``within`` s); the exit code."""
        if not process.running:
            return process.proc.returncode if process.proc else None
        assert process.proc is not None
        process.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(process.proc.wait(), within)
        except TimeoutError:
            process.proc.kill()
            return await process.proc.wait()

    async def wait_for(self, process: ServiceProcess, path: str, within: float) -> None:
        """Poll ``path`` on ``process`` until it answers 200, or raise with its log's tail."""
        deadline = asyncio.get_running_loop().time() + within
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if not process.running:
                    name = f"{process.name}-{process.index}"
                    raise RuntimeError(f"{name} exited:\n{self.tail(process)}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(process.url + path)).status_code == 200:
                        return
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(
                        f"{process.name}-{process.index} {path} not OK after {within}s:\n"
                        + self.tail(process)
                    )
                await asyncio.sleep(0.1)

    async def wait_ready(self, within: float = 60.0) -> None:
        """Every running replica answers /readyz 200."""
        for process in self.processes:
            if process.running:
                await self.wait_for(process, "/readyz", within)

    async def metrics(self, process: ServiceProcess) -> str:
        async with httpx.AsyncClient(timeout=5.0) as client:
            return (await client.get(process.url + "/metrics")).text

    def tail(self, process: ServiceProcess, lines: int = 30) -> str:
        try:
            text = process.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
