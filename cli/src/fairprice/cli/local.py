"""`fairprice run` and `fairprice demo`: the whole pipeline as local processes.

Starts ``nats-server -js`` and ``influxd`` with their data under one state folder that survives
restarts (``.state/`` by default), then the services (the price API too) as child processes
with their logs prefixed by service name (``fairprice.cli.supervisor``), and Grafana when a
``grafana-server``/``grafana`` binary is on PATH (``fairprice.cli.grafana``). ``run`` crawls
live Binance; ``demo`` crawls the bundled simulator under the exchange name ``sim``, so
simulated data can never be mistaken for real market data. Ctrl-C stops everything
gracefully: services first (producers before the storer), then the servers.

NATS and InfluxDB listen where the configuration says (``[nats] servers``, ``[influx] url``;
4222 and 8086 by default), so ``fairprice top`` and ``fairprice status`` find them. NATS holds
every service's user with its permissions, each with a fresh random password given to its
service only; the ``viewer`` (``top``, ``status``) has the configuration's ``[nats] password``
when its ``[nats] user`` is ``viewer`` (clusters_dev.toml's).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import sys
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from fairprice.api.settings import ApiSettings
from fairprice.cli.grafana import grafana_spec
from fairprice.cli.processes import INFLUX_READER, influx_passwords, service_env
from fairprice.cli.supervisor import ServiceSpec, Supervisor
from fairprice.common.bus import connect_bus
from fairprice.common.errors import FatalError
from fairprice.common.feeds import AlertRule, Feed, encode_feed
from fairprice.common.kv import Bucket, open_bucket
from fairprice.common.lifecycle import install_signal_handlers
from fairprice.common.local_servers import InfluxServer, run_influxd, run_nats
from fairprice.common.nats_config import local_users
from fairprice.common.nats_permissions import Role
from fairprice.common.settings import InfluxSettings, NatsSettings, load_settings
from fairprice.converter.settings import ConverterSettings
from fairprice.crawler.settings import CrawlerSettings
from fairprice.simulator.settings import SimulatorSettings
from fairprice.storer.settings import StorerSettings

__all__ = ["Mode", "binance_unreachable", "run_local"]

Mode = Literal["live", "demo"]
DEMO_EXCHANGE = "sim"


async def binance_unreachable(rest_url: str) -> str | None:
    """None when ``rest_url``'s ping answers, else one line saying why not."""
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.get(rest_url.rstrip("/") + "/api/v3/ping")
    except httpx.HTTPError as exc:
        return f"cannot reach Binance at {rest_url} ({type(exc).__name__}: {exc or 'no answer'})"
    if response.status_code != 200:
        return f"Binance at {rest_url} answered HTTP {response.status_code} to /api/v3/ping"
    return None


def _port_of(url: str, default: int, what: str) -> int:
    port = urlsplit(url).port or default
    with socket.socket() as sock:
        # As the servers themselves bind: connections of a previous run still in TIME_WAIT
        # must not count as "in use", only a listener.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise FatalError(
                f"port {port} for {what} is in use (a system service? e.g. `systemctl stop "
                f"{'nats-server' if what == 'nats-server' else 'influxdb'}`), or point the "
                f"configuration at another port"
            ) from None
    return port


def _specs(
    mode: Mode,
    nats_url: str,
    passwords: dict[str, str],
    influx_url: str,
    influx_secrets: dict[str, str],
    extra_symbols: int,
) -> tuple[list[ServiceSpec], list[str]]:
    crawler = load_settings(CrawlerSettings).crawler
    symbols = list(crawler.symbols)
    python = sys.executable

    def spec(
        name: str,
        *,
        simulator_url: str | None = None,
        exchange: str | None = None,
        symbols: list[str] | None = None,
    ) -> ServiceSpec:
        env = service_env(
            name,
            nats_url=nats_url,
            nats_password=passwords.get(name),
            influx_url=influx_url,
            influx_passwords=influx_secrets,
            simulator_url=simulator_url,
            exchange=exchange,
            symbols=symbols,
            log_format="console",
        )
        return ServiceSpec(name, [python, "-m", f"fairprice.{name}"], env)

    specs = []
    if mode == "demo":
        symbols += [f"SIM{n:04d}USDT" for n in range(extra_symbols)]
        simulator = load_settings(SimulatorSettings).simulator
        sim_url = f"http://127.0.0.1:{simulator.port}"
        specs.append(spec("simulator", symbols=symbols))
        crawler_spec = spec(
            "crawler", simulator_url=sim_url, exchange=DEMO_EXCHANGE, symbols=symbols
        )
    else:
        crawler_spec = spec("crawler")
    specs += [spec("storer"), spec("converter"), spec("api"), crawler_spec]
    return specs, symbols


DEMO_FEED_KEY = "local.demo"
DEMO_ALERTS = (
    AlertRule(
        name="buy-signal", kind="signal", strategy="sma_cross", action="BUY", severity="info"
    ),
    AlertRule(name="fast-move", kind="move", percent=0.02, window_seconds=30),
)
"""The demo's market alerts: `fairprice top` lists them while they fire. The move is sized
to the simulator's seeded walk (0.002-0.02 % per 30 s): BNBUSDT, the liveliest, makes it
within about 15 s of the first price and then every minute or so (tests/e2e/test_quickstart);
the crossover's first BUY takes the slow SMA's minute and more."""


def demo_feed(symbols: list[str]) -> Feed:
    """The feed the demo writes where the operator would (KV ``feeds``): its symbols with the
    converter's own pricing settings and ``DEMO_ALERTS``."""
    converter = load_settings(ConverterSettings).converter
    return Feed(
        exchange=DEMO_EXCHANGE,
        symbols=symbols,
        method=converter.method,
        notional=converter.notional,
        sma_fast_s=converter.sma_fast_s,
        sma_slow_s=converter.sma_slow_s,
        alerts=DEMO_ALERTS,
    )


async def _put_demo_feed(nats_url: str, password: str, symbols: list[str]) -> None:
    """Where the operator would put it, as the operator's NATS user."""
    settings = load_settings(StorerSettings).nats.model_copy(
        update={"servers": [nats_url], "user": Role.OPERATOR.value, "password": SecretStr(password)}
    )
    async with connect_bus(settings, name="fairprice-demo") as bus:
        feeds = await open_bucket(bus.js, Bucket.FEEDS)
        await feeds.put(DEMO_FEED_KEY, encode_feed(demo_feed(symbols)))


def _viewer_password(settings: NatsSettings) -> str | None:
    """The configuration's own NATS password (``fairprice status`` and ``top`` read it) when
    it names the viewer: the local server's viewer gets it, every service a random one."""
    if settings.user == Role.VIEWER.value and settings.password is not None:
        return settings.password.get_secret_value()
    return None


def _reader_password(settings: InfluxSettings) -> str | None:
    """The configuration's InfluxDB password when it names the reader (clusters_dev.toml's:
    the price API and Grafana read with it)."""
    if settings.username == INFLUX_READER and settings.password is not None:
        return settings.password.get_secret_value()
    return None


def _admin_password(state_dir: Path) -> str:
    """InfluxDB's admin password of this state folder: made on the first run and kept (the
    admin is created once, with the database), readable by its owner only."""
    path = state_dir / "influxd-admin.password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(18))
        path.chmod(0o600)
    return path.read_text().strip()


async def run_local(mode: Mode, state_dir: Path, extra_symbols: int = 0) -> int:
    """Run until Ctrl-C or SIGTERM; the exit code."""
    settings = load_settings(StorerSettings)  # the shared [nats] and [influx] sections
    api_port = load_settings(ApiSettings).api.port
    if mode == "live":
        rest_url = load_settings(CrawlerSettings).crawler.rest_url
        problem = await binance_unreachable(rest_url)
        if problem:
            print(
                f"fairprice: {problem}. Run `make demo` for the same pipeline against the "
                "bundled simulator, with no internet needed.",
                file=sys.stderr,
            )
            return 1
    nats_port = _port_of(settings.nats.servers[0], 4222, "nats-server")
    influx_port = _port_of(settings.influx.url, 8086, "influxd")
    stop = install_signal_handlers()
    print(f"fairprice: {mode} run, state in {state_dir}/ (kept between runs)", flush=True)
    users = local_users(viewer_password=_viewer_password(settings.nats))
    influx_secrets = influx_passwords(_reader_password(settings.influx))
    influx_secrets[InfluxServer.ADMIN] = _admin_password(state_dir)
    async with (
        run_nats(
            state_dir / "nats", port=nats_port, config=users.config, passwords=users.passwords
        ) as nats_server,
        run_influxd(
            state_dir / "influxd",
            port=influx_port,
            admin_password=influx_secrets[InfluxServer.ADMIN],
        ) as influxd,
    ):
        specs, symbols = _specs(
            mode, nats_server.url, nats_server.passwords, influxd.url, influx_secrets, extra_symbols
        )
        print(
            f"fairprice: nats-server on {nats_server.url}, influxd on {influxd.url}; "
            f"{len(symbols)} symbols",
            flush=True,
        )
        if mode == "demo":
            await _put_demo_feed(nats_server.url, users.passwords[Role.OPERATOR], symbols)
            names = ", ".join(rule.name for rule in DEMO_ALERTS)
            print(f"fairprice: market alerts {names} on every symbol", flush=True)
        grafana = grafana_spec(
            state_dir / "grafana",
            influxd.url,
            settings.influx.database,
            user=INFLUX_READER,
            password=influx_secrets[INFLUX_READER],
        )
        if grafana is not None:
            specs.append(grafana)
            print(
                "fairprice: Grafana on http://127.0.0.1:3000 (anonymous viewer; admin/admin)",
                flush=True,
            )
        print(
            "fairprice: `fairprice top` shows the live board, `fairprice status` the health, "
            f"`fairprice price SYMBOL` a price from the API (http://127.0.0.1:{api_port}/docs); "
            "Ctrl-C stops everything",
            flush=True,
        )
        await Supervisor(specs).run(stop)
        print("fairprice: services stopped; stopping nats-server and influxd", flush=True)
    return 0


def main(mode: Mode, state_dir: Path, extra_symbols: int = 0) -> int:
    state_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run_local(mode, state_dir, extra_symbols))
    return 130
