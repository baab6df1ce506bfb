"""Fixtures: a simulator on a free port with a small, fast market."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from fairprice.common.testing import recordings_dir
from fairprice.simulator import MarketSettings, Simulator, SimulatorSection, run_simulator

RECORDINGS = recordings_dir()
DECIMAL = re.compile(r"^\d+\.\d{8}$")

SimFactory = Callable[..., Awaitable[Simulator]]


def fast_settings(**overrides: Any) -> SimulatorSection:
    """Three named symbols plus five generated ones, 20 ms ticks; ``market`` may be a dict."""
    market = {"generated_symbols": 5, "tick_ms": 20.0, **overrides.pop("market", {})}
    return SimulatorSection(host="127.0.0.1", port=0, market=MarketSettings(**market), **overrides)


@pytest.fixture
async def make_sim() -> AsyncIterator[SimFactory]:
    """``sim = await make_sim(weight_limit=10, market={"seed": 2})``: started, stopped after."""
    stack: list[Any] = []

    async def make(**overrides: Any) -> Simulator:
        context = run_simulator(fast_settings(**overrides))
        sim = await context.__aenter__()
        stack.append(context)
        return sim

    yield make
    for context in reversed(stack):
        await context.__aexit__(None, None, None)


@pytest.fixture
async def sim(make_sim: SimFactory) -> Simulator:
    return await make_sim()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def until(predicate: Callable[[], bool], within_s: float = 10.0) -> None:
    """Poll ``predicate`` until it holds; fail after ``within_s`` seconds."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def shape(value: Any) -> Any:
    """A value's JSON shape: key order kept, decimal strings as ``"dec8"``, lists by element."""
    if isinstance(value, dict):
        return [(key, shape(item)) for key, item in value.items()]
    if isinstance(value, list):
        return ["list", shape(value[0]) if value else None]
    if isinstance(value, str) and DECIMAL.match(value):
        return "dec8"
    return type(value).__name__


def recorded_frames(kind: str) -> list[dict[str, Any]]:
    """Real Binance frames of one stream kind (``@depth@100ms``, ``@bookTicker``)."""
    import json

    frames = []
    for path in sorted(RECORDINGS.glob("*/BINANCE.ws.1.0")):
        for line in path.read_text().splitlines()[1:]:
            _, _, raw = line.partition(": ")
            if f'{kind}"' in raw:
                frames.append(json.loads(raw))
    assert frames, f"no recorded {kind} frames under {RECORDINGS}"
    return frames


def recorded_snapshot() -> dict[str, Any]:
    import json

    for path in sorted(RECORDINGS.glob("*/BINANCE.http.0.0")):
        for line in path.read_text().splitlines():
            _, _, raw = line.partition(": ")
            return dict(json.loads(raw))
    raise AssertionError(f"no recorded snapshots under {RECORDINGS}")
