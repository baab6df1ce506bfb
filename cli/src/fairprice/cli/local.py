"""`fairprice run` and `fairprice demo`: the whole pipeline as local processes.

Starts ``nats-server -js`` and ``influxd`` with their data under one state folder that survives
restarts (``.state/`` by default), then the services as child processes with their logs
prefixed by service name, and Grafana when a ``grafana-server``/``grafana`` binary is on PATH.
``run`` crawls live Binance; ``demo`` crawls the bundled simulator under the exchange name
``sim``, so simulated data can never be mistaken for real market data. Ctrl-C stops
everything gracefully: services first (producers before the storer), then the servers.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import httpx

from fairprice.cli.supervisor import ServiceSpec, Supervisor
from fairprice.common.lifecycle import install_signal_handlers
from fairprice.common.settings import InfluxSettings, ServiceSettings
from fairprice.common.testing.servers import run_influxd, run_nats

__all__ = ["LocalSettings", "binance_unreachable", "run_local"]

Mode = Literal["live", "demo"]

DEMO_EXCHANGE = "sim"
DEMO_SIMULATOR_PORT = 8090


class LocalSettings(ServiceSettings):
    """What the local runner reads of the shared configuration: where NATS and InfluxDB go."""

    influx: InfluxSettings = InfluxSettings()


def _port(url: str, default: int) -> int:
    return urlsplit(url).port or default


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


def _services(mode: Mode, nats_url: str, influx_url: str, rest_url: str) -> list[ServiceSpec]:
    common = {
        "FAIRPRICE_NATS__SERVERS": f'["{nats_url}"]',
        "FAIRPRICE_INFLUX__URL": influx_url,
        "FAIRPRICE_LOG__FORMAT": "console",
    }
    python = sys.executable
    specs = []
    crawler_env = dict(common)
    if mode == "demo":
        sim_url = f"127.0.0.1:{DEMO_SIMULATOR_PORT}"
        specs.append(ServiceSpec("simulator", [python, "-m", "fairprice.simulator"], common))
        crawler_env |= {
            "FAIRPRICE_CRAWLER__EXCHANGE": DEMO_EXCHANGE,
            "FAIRPRICE_CRAWLER__REST_URL": f"http://{sim_url}",
            "FAIRPRICE_CRAWLER__WS_URL": f"ws://{sim_url}",
        }
    else:
        crawler_env["FAIRPRICE_CRAWLER__REST_URL"] = rest_url
    specs += [
        ServiceSpec("storer", [python, "-m", "fairprice.storer"], common),
        ServiceSpec("converter", [python, "-m", "fairprice.converter"], common),
        ServiceSpec("crawler", [python, "-m", "fairprice.crawler"], crawler_env),
    ]
    return specs


async def run_local(mode: Mode, state_dir: Path, rest_url: str) -> int:
    """Run until Ctrl-C or SIGTERM; the exit code."""
    settings = LocalSettings()
    if mode == "live":
        problem = await binance_unreachable(rest_url)
        if problem:
            print(
                f"fairprice: {problem}. Run `make demo` for the same pipeline against the "
                "bundled simulator, with no internet needed.",
                file=sys.stderr,
            )
            return 1
    stop = install_signal_handlers()
    nats_port = _port(settings.nats.servers[0], 4222)
    influx_port = _port(settings.influx.url, 8086)
    print(f"fairprice: state in {state_dir}/ (kept between runs)", flush=True)
    async with (
        run_nats(state_dir / "nats", port=nats_port) as nats_server,
        run_influxd(state_dir / "influxd", port=influx_port) as influxd,
    ):
        print(f"fairprice: nats-server on {nats_server.url}, influxd on {influxd.url}", flush=True)
        supervisor = Supervisor(_services(mode, nats_server.url, influxd.url, rest_url))
        await supervisor.run(stop)
        print("fairprice: services stopped; stopping nats-server and influxd", flush=True)
    return 0


def main(mode: Mode, state_dir: Path, rest_url: str) -> int:
    state_dir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(run_local(mode, state_dir, rest_url))
