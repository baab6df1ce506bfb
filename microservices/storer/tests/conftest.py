"""Fixtures for the storer's tests: settings against the real servers, a storer run in-process,
message factories with the real message ids, and InfluxQL read-back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from fairprice.common.bus import Bus
from fairprice.common.messages import Book, FairPrice, Message, Signal, encode
from fairprice.common.publisher import Publisher
from fairprice.common.settings import HttpSettings, InfluxSettings
from fairprice.common.subjects import (
    book_msg_id,
    books_subject,
    candle_msg_id,
    candles_subject,
    price_msg_id,
    prices_subject,
    signal_msg_id,
    signals_subject,
)
from fairprice.common.testing import InfluxServer, NatsServer, nats_settings_of
from fairprice.storer import StorerSettings, run
from fairprice.storer.settings import RetrySettings, StorerSection

# Recent enough for the 30-day retention policy, fixed within a run.
BASE_MS = (int(time.time() * 1000) - 3_600_000) // 60_000 * 60_000


@pytest.fixture
def storer_settings(nats_server: NatsServer, influxd: InfluxServer) -> StorerSettings:
    """The storer as its own NATS user (its permissions: fairprice.common.nats_permissions)."""
    return StorerSettings(
        nats=nats_settings_of(nats_server, "storer"),
        influx=InfluxSettings(url=influxd.admin_url, timeout_s=2.0),
        storer=StorerSection(
            batch_size=100,
            max_delay_s=0.05,
            max_ack_pending=1000,
            ack_wait_s=30,
            influx_ping_s=0.2,
            retry=RetrySettings(initial_s=0.05, max_s=0.5),
            http=HttpSettings(host="127.0.0.1", port=0),
        ),
    )


@dataclass
class RunningStorer:
    registry: CollectorRegistry
    stop: asyncio.Event
    task: asyncio.Task[None]

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@contextlib.asynccontextmanager
async def running_storer(settings: StorerSettings) -> AsyncIterator[RunningStorer]:
    """The storer run in-process until the block ends (then stopped gracefully)."""
    stop, ready = asyncio.Event(), asyncio.Event()
    registry = CollectorRegistry()
    task = asyncio.create_task(run(settings, stop=stop, ready=ready, registry=registry))
    waiter = asyncio.create_task(ready.wait())
    try:
        async with asyncio.timeout(30):
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
            raise AssertionError("storer ended before it was ready")
        yield RunningStorer(registry, stop, task)
    finally:
        waiter.cancel()
        stop.set()
        async with asyncio.timeout(30):
            await asyncio.gather(task, waiter, return_exceptions=True)
    task.result()


def book(
    i: int, *, exchange: str = "sim", symbol: str = "AAA", bids: Any = None, asks: Any = None
) -> Book:
    return Book(
        exchange=exchange,
        symbol=symbol,
        update_id=1000 + i,
        first_update_id=1000 + i,
        event_time_ms=BASE_MS + i * 100,
        receive_time_ms=BASE_MS + i * 100 + 3,
        bids=bids if bids is not None else [(f"{100 + i % 7}.5", "1.25"), ("99", "2")],
        asks=asks if asks is not None else [(f"{101 + i % 7}", "0.5"), ("102.25", "3")],
    )


def book_id(message: Book | FairPrice | Signal) -> str:
    return book_msg_id(message.exchange, message.symbol, message.update_id)


async def publish(bus: Bus, messages: list[Message], *, subject_symbol: str | None = None) -> None:
    """Publish with the pipeline's real subjects and message ids (``subject_symbol`` for tag
    values that cannot be part of a subject)."""
    async with Publisher(bus.nc) as publisher:
        for message in messages:
            symbol = subject_symbol or message.symbol
            if isinstance(message, Book):
                subject, msg_id = books_subject("sim", symbol), book_id(message)
            elif isinstance(message, FairPrice):
                subject, msg_id = prices_subject("sim", symbol), price_msg_id(book_id(message))
            elif isinstance(message, Signal):
                subject = signals_subject("sim", symbol)
                msg_id = signal_msg_id(book_id(message), message.strategy, message.action)
            else:
                subject = candles_subject("sim", symbol, message.interval)
                msg_id = candle_msg_id(
                    message.exchange, message.symbol, message.interval, message.start_ms
                )
            await publisher.publish(subject, encode(message), msg_id)


Query = Callable[[str], Awaitable[list[dict[str, Any]]]]


@dataclass
class Harness:
    """What the storer's tests share: the servers, a way to publish and a way to read back."""

    bus: Bus
    influxd: InfluxServer
    settings: StorerSettings

    storer = staticmethod(running_storer)
    book = staticmethod(book)

    async def publish(self, messages: list[Message], *, subject_symbol: str | None = None) -> None:
        await publish(self.bus, messages, subject_symbol=subject_symbol)

    async def query(self, statement: str) -> list[dict[str, Any]]:
        """Run InfluxQL on ``fair_price``; the result's series (``[]`` when there is none)."""
        async with httpx.AsyncClient(base_url=self.influxd.admin_url, timeout=10) as client:
            response = await client.get(
                "/query", params={"db": "fair_price", "q": statement, "epoch": "ms"}
            )
        response.raise_for_status()
        result = response.json()["results"][0]
        if result.get("error", "").startswith("database not found"):
            return []  # not created yet (or dropped by the test)
        assert "error" not in result, result
        series: list[dict[str, Any]] = result.get("series", [])
        return series

    async def rows(self, statement: str) -> list[dict[str, Any]]:
        """The rows of a single-series result as dicts by column."""
        series = await self.query(statement)
        assert len(series) <= 1, series
        return [
            dict(zip(s["columns"], values, strict=True)) for s in series for values in s["values"]
        ]

    async def rows_all(self, statement: str) -> list[dict[str, Any]]:
        """The rows of every series of a result, tags of a GROUP BY included."""
        return [
            {**s.get("tags", {}), **dict(zip(s["columns"], values, strict=True))}
            for s in await self.query(statement)
            for values in s["values"]
        ]

    async def count(self, measurement: str, field: str) -> int:
        series = await self.query(f'SELECT count("{field}") FROM "{measurement}"')
        return int(series[0]["values"][0][1]) if series else 0

    async def wait_for(
        self, predicate: Callable[[], Awaitable[bool]], *, within: float = 30.0, what: str = ""
    ) -> None:
        """Poll ``predicate`` until it holds; fail after ``within`` seconds."""
        deadline = time.monotonic() + within
        while not await predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.05)

    async def wait_count(
        self, measurement: str, field: str, expected: int, within: float = 30.0
    ) -> None:
        async def reached() -> bool:
            return await self.count(measurement, field) >= expected

        await self.wait_for(reached, within=within, what=f"{expected} {measurement} points")


@pytest.fixture
def h(bus: Bus, influxd: InfluxServer, storer_settings: StorerSettings) -> Harness:
    return Harness(bus, influxd, storer_settings)
