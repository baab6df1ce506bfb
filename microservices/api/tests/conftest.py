"""The price API against a real pipeline: nats-server, influxd, the simulator, crawler,
converter and storer as processes (``fairprice.cli.processes.Pipeline``), and the API
in-process through its ``run(settings, stop=..., ready=...)``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from fairprice.api.service import run
from fairprice.api.settings import ApiSection, ApiSettings, StreamSettings
from fairprice.cli.processes import Pipeline
from fairprice.common.bus import Bus, connect_bus
from fairprice.common.settings import HttpSettings, InfluxSettings, NatsSettings

SYMBOLS = ["SIM0000USDT", "SIM0001USDT"]
ENV = {
    "*": {"FAIRPRICE_NATS__RECONNECT_WAIT_S": "0.2"},
    "converter": {
        # Short windows: signals within seconds; the KV `latest` written often.
        "FAIRPRICE_CONVERTER__SMA_FAST_S": "1",
        "FAIRPRICE_CONVERTER__SMA_SLOW_S": "3",
        "FAIRPRICE_CONVERTER__MIN_GAP": "0",
        "FAIRPRICE_CONVERTER__LATEST_INTERVAL_S": "0.2",
    },
    "storer": {"FAIRPRICE_STORER__MAX_DELAY_S": "0.1", "FAIRPRICE_STORER__INFLUX_PING_S": "0.5"},
}


@dataclass
class Api:
    """One in-process API: its base URLs and a client."""

    url: str
    health_url: str
    client: httpx.AsyncClient
    settings: ApiSettings
    ports: dict[str, int] = field(default_factory=dict)


def api_settings(nats: NatsSettings, influx_url: str, **section: Any) -> ApiSettings:
    stream = section.pop("stream", {})
    return ApiSettings(
        nats=nats,
        influx=InfluxSettings(url=influx_url, timeout_s=2),
        api=ApiSection(
            host="127.0.0.1",
            port=0,
            http=HttpSettings(host="127.0.0.1", port=0),
            influx_ping_s=0.5,
            stream=StreamSettings(**stream),
            **section,
        ),
    )


@contextlib.asynccontextmanager
async def running_api(settings: ApiSettings) -> AsyncIterator[Api]:
    stop, ready = asyncio.Event(), asyncio.Event()
    ports: dict[str, int] = {}
    task = asyncio.create_task(run(settings, stop=stop, ready=ready, ports=ports))
    try:
        waiting = asyncio.ensure_future(ready.wait())
        await asyncio.wait({task, waiting}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # raises what stopped it
        assert ready.is_set(), "the API was not ready within 60 s"
        url = f"http://127.0.0.1:{ports['api']}"
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            yield Api(url, f"http://127.0.0.1:{ports['http']}", client, settings, ports)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@dataclass
class Rig:
    pipeline: Pipeline
    bus: Bus
    api: Api


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(module_dir: Path) -> AsyncIterator[Rig]:
    async with Pipeline(module_dir, symbols=SYMBOLS, env=ENV) as pipeline:
        await pipeline.wait_ready(120)
        nats = pipeline.nats_settings()
        async with (
            connect_bus(nats, name="api-test") as bus,
            running_api(api_settings(pipeline.nats_settings("api"), pipeline.influx_url())) as api,
        ):
            yield Rig(pipeline, bus, api)


@dataclass(frozen=True)
class Event:
    event: str
    id: str | None
    data: str


async def sse_events(response: httpx.Response) -> AsyncIterator[Event]:
    """The events of a ``text/event-stream`` response (comments skipped)."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if "data" in fields:
                yield Event(fields.get("event", "message"), fields.get("id"), fields["data"])
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
