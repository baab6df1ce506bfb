"""What the end-to-end tests share: reading the streams, reading InfluxDB back, and the audit
that compares every stage with the next over a closed window of exchange event time.

The audit is the heart of these tests. For a window ``[start_ms, end_ms]`` of event time it
takes every message of BOOKS, PRICES, SIGNALS and CANDLES (read by stream sequence with an
ephemeral ack-less pull consumer and decoded with the one schema) and every point of the
InfluxDB measurements, and counts:

- books: per symbol, no update id twice; with ``publish_every_event`` the update ids of
  consecutive books are contiguous (``first_update_id == previous update_id + 1``) except in
  ``gaps``, which are reported with their event-time span (a crawler outage shows there);
- prices: exactly one per book (by symbol and update id), none for a book that is not there;
- signals: exactly those that the prices' ``trend`` implies (a BUY where the trend of a symbol
  turns from -1 to +1 between two consecutive prices, a SELL the other way), each once;
- candles: the 1-minute ones exactly the closed minutes of the prices, with the OHLC and count
  of those prices (the longer intervals are checked against the prices in the converter's
  tests);
- InfluxDB: ``orderbook``, ``fair_price``, ``indicator``, ``signal`` and ``candle`` (interval
  ``1m``) hold one point per message, keyed and valued as the message says, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
import msgspec
import nats.errors
import nats.js.errors
import pytest
from nats.js import api

from fairprice.cli.processes import Pipeline, ServiceProcess
from fairprice.common.bus import Bus, connect_bus
from fairprice.common.messages import Book, Candle, FairPrice, Signal, decode
from fairprice.common.subjects import Stream

__all__ = [
    "Audit",
    "Lake",
    "StreamLog",
    "Window",
    "now_ms",
    "ready",
    "wait_books",
]

M = TypeVar("M", Book, FairPrice, Signal, Candle)
MINUTE_MS = 60_000
DATABASE = "fair_price"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Window:
    """A closed interval of exchange event time, milliseconds since the epoch."""

    start_ms: int
    end_ms: int

    def __contains__(self, time_ms: int) -> bool:
        return self.start_ms <= time_ms <= self.end_ms

    @property
    def influxql(self) -> str:
        return f"time >= {self.start_ms}ms AND time <= {self.end_ms}ms"


class StreamLog(Generic[M]):
    """Every message of one stream in stream order, read incrementally by sequence."""

    def __init__(self, stream: Stream, kind: type[M]) -> None:
        self.stream = stream
        self.kind = kind
        self.messages: list[M] = []
        self.next_seq = 1

    async def read(self, bus: Bus, within: float = 30.0) -> list[M]:
        """Read what the stream holds now beyond what was read before; all messages so far.

        In a NATS cluster the reader's consumer (R1, ephemeral) lives on one node, which may be
        one that has just come back and whose interest has not reached the others yet: then
        nobody answers its pull requests (503, no responders), or its creation times out.
        Such a consumer is left to expire (``inactive_threshold``) and a new one placed, from
        where the last one stopped, for ``within`` seconds."""
        last = (await bus.jsm.stream_info(self.stream.value)).state.last_seq
        deadline = time.monotonic() + within
        while self.next_seq <= last:
            try:
                await self._read_to(bus, last)
            except (
                nats.js.errors.ServiceUnavailableError,
                nats.errors.NoRespondersError,
                nats.errors.TimeoutError,
            ):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)  # back-off before placing the next consumer
        return self.messages

    async def _read_to(self, bus: Bus, last: int) -> None:
        config = api.ConsumerConfig(
            ack_policy=api.AckPolicy.NONE,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self.next_seq,
            inactive_threshold=30.0,
            mem_storage=True,
        )
        psub = await bus.js.pull_subscribe(
            self.stream.wildcard, durable=None, stream=self.stream.value, config=config
        )
        try:
            while self.next_seq <= last:
                for msg in await psub.fetch(1000, timeout=10):
                    seq = msg.metadata.sequence.stream
                    if seq >= self.next_seq:
                        self.messages.append(decode(msg.data, self.kind))
                        self.next_seq = seq + 1
        finally:
            with contextlib.suppress(Exception):
                await psub.unsubscribe()


class Lake:
    """The four streams of one pipeline, read incrementally."""

    def __init__(self) -> None:
        self.books = StreamLog(Stream.BOOKS, Book)
        self.prices = StreamLog(Stream.PRICES, FairPrice)
        self.signals = StreamLog(Stream.SIGNALS, Signal)
        self.candles = StreamLog(Stream.CANDLES, Candle)

    async def read(self, bus: Bus) -> None:
        # Downstream first: whatever a later stream holds, its cause is in the earlier one.
        for log in (self.candles, self.signals, self.prices, self.books):
            await log.read(bus)


async def influx_rows(influx_url: str, query: str) -> list[tuple[str, list[Any]]]:
    """``(symbol, row)`` of every row of ``query`` (which must ``GROUP BY symbol``)."""
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(
            influx_url + "/query", params={"db": DATABASE, "q": query, "epoch": "ms"}
        )
    response.raise_for_status()
    rows: list[tuple[str, list[Any]]] = []
    for result in response.json().get("results", []):
        if "error" in result:
            raise AssertionError(f"{query}: {result['error']}")
        for series in result.get("series", []):
            symbol = series["tags"]["symbol"]
            rows.extend((symbol, row) for row in series["values"])
    return rows


async def measurement_has_points(influx_url: str, measurement: str, field_name: str) -> bool:
    with contextlib.suppress(httpx.HTTPError, AssertionError):
        query = f'SELECT count("{field_name}") FROM "{measurement}" GROUP BY symbol'
        return bool(await influx_rows(influx_url, query))
    return False


@dataclass
class Audit:
    """Figures of one window; ``clean`` when nothing is missing, extra or duplicated."""

    window: Window
    figures: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    gaps: list[tuple[str, int, int, int]] = field(default_factory=list)
    """Per crawler outage: (symbol, update ids missing, event time of the last book before
    the gap, event time of the first book after it)."""

    @property
    def clean(self) -> bool:
        return not self.problems

    def compare(self, what: str, expected: Counter[Any], actual: Counter[Any]) -> None:
        """Record ``what``: its count, and how many expected items are missing, how many are
        there that should not be, and how many are there more than once."""
        missing = sum((expected - actual).values())
        extra = sum(n for item, n in actual.items() if item not in expected)
        duplicated = sum(n - 1 for n in actual.values() if n > 1)
        self.figures[what] = sum(actual.values())
        self.figures[f"{what}: lost"] = missing
        self.figures[f"{what}: duplicated"] = duplicated
        if extra:
            self.figures[f"{what}: unexpected"] = extra
        if missing or extra or duplicated:
            lost = sorted(expected - actual)[:3]
            wrong = sorted(i for i, n in actual.items() if n > 1 or i not in expected)[:3]
            self.problems.append(f"{what}: lost {lost}..., duplicated or unexpected {wrong}...")

    def report(self, title: str) -> str:
        lines = [f"{title} (window {(self.window.end_ms - self.window.start_ms) / 1000:.1f} s)"]
        lines += [f"  {name:<32} {value}" for name, value in self.figures.items()]
        for symbol, missing, before_ms, after_ms in self.gaps:
            lines.append(
                f"  gap {symbol}: {missing} update ids not published, "
                f"{(after_ms - before_ms) / 1000:.2f} s of event time"
            )
        lines += [f"  PROBLEM {p}" for p in self.problems]
        return "\n".join(lines)


def expected_signals(prices: list[FairPrice]) -> Counter[tuple[str, int, str]]:
    """The signals that the prices' trend implies, keyed (symbol, update id, action)."""
    trend: dict[str, int] = defaultdict(int)
    found: Counter[tuple[str, int, str]] = Counter()
    for price in prices:
        previous, trend[price.symbol] = trend[price.symbol], price.trend
        if previous and price.trend == -previous:
            action = "BUY" if price.trend > 0 else "SELL"
            found[(price.symbol, price.update_id, action)] += 1
    return found


def expected_candles(prices: list[FairPrice]) -> dict[tuple[str, int], Candle]:
    """Each symbol's minutes that a later price closed, as candles of the prices in them."""
    open_: dict[str, Candle] = {}
    closed: dict[tuple[str, int], Candle] = {}
    for p in prices:
        start = p.event_time_ms - p.event_time_ms % MINUTE_MS
        current = open_.get(p.symbol)
        if current is not None and current.start_ms == start:
            open_[p.symbol] = msgspec.structs.replace(
                current,
                high=max(current.high, p.price),
                low=min(current.low, p.price),
                close=p.price,
                count=current.count + 1,
            )
            continue
        if current is not None:
            closed[(p.symbol, current.start_ms)] = current
        open_[p.symbol] = Candle(
            exchange=p.exchange,
            symbol=p.symbol,
            start_ms=start,
            open=p.price,
            high=p.price,
            low=p.price,
            close=p.price,
            count=1,
        )
    return closed


def candle_key(c: Candle) -> tuple[str, int, float, float, float, float, int]:
    return (c.symbol, c.start_ms, c.open, c.high, c.low, c.close, c.count)


def _gaps(books: list[Book], window: Window) -> list[tuple[str, int, int, int]]:
    """Per symbol, in update id order: books that do not follow on from the previous one."""
    by_symbol: dict[str, dict[int, Book]] = defaultdict(dict)
    for book in books:
        by_symbol[book.symbol][book.update_id] = book
    gaps = []
    for symbol, found in sorted(by_symbol.items()):
        ordered = [found[u] for u in sorted(found)]
        for before, book in zip(ordered, ordered[1:], strict=False):
            if book.event_time_ms in window and book.first_update_id != before.update_id + 1:
                missing = book.first_update_id - before.update_id - 1
                gaps.append((symbol, missing, before.event_time_ms, book.event_time_ms))
    return gaps


async def audit(lake: Lake, bus: Bus, influx_url: str, window: Window) -> Audit:
    """Read what is new in the streams and everything of ``window`` in InfluxDB; compare."""
    await lake.read(bus)
    result = Audit(window)
    books = [b for b in lake.books.messages if b.event_time_ms in window]
    prices = [p for p in lake.prices.messages if p.event_time_ms in window]
    signals = [s for s in lake.signals.messages if s.event_time_ms in window]

    book_keys = Counter((b.symbol, b.update_id) for b in books)
    result.compare("books in BOOKS (unique ids)", Counter(set(book_keys)), book_keys)
    result.gaps = _gaps(lake.books.messages, window)
    result.figures["update ids not published"] = sum(g[1] for g in result.gaps)
    result.compare(
        "prices in PRICES",
        Counter(set(book_keys)),
        Counter((p.symbol, p.update_id) for p in prices),
    )
    implied = expected_signals(lake.prices.messages)
    in_window = {(p.symbol, p.update_id) for p in prices}
    result.compare(
        "signals in SIGNALS",
        Counter({k: 1 for k in implied if k[:2] in in_window}),
        Counter((s.symbol, s.update_id, s.action) for s in signals),
    )

    where = window.influxql
    stored_books = await influx_rows(
        influx_url, f"SELECT update_id FROM orderbook WHERE {where} GROUP BY symbol"
    )
    result.compare(
        "orderbook points",
        Counter((b.symbol, b.event_time_ms, b.update_id) for b in books),
        Counter((s, row[0], row[1]) for s, row in stored_books),
    )
    stored_prices = await influx_rows(
        influx_url, f"SELECT price FROM fair_price WHERE {where} GROUP BY symbol"
    )
    result.compare(
        "fair_price points",
        Counter((p.symbol, p.event_time_ms, p.price) for p in prices),
        Counter((s, row[0], row[1]) for s, row in stored_prices),
    )
    stored_indicators = await influx_rows(
        influx_url, f"SELECT sma_fast, sma_slow FROM indicator WHERE {where} GROUP BY symbol"
    )
    result.compare(
        "indicator points",
        Counter(
            (p.symbol, p.event_time_ms, p.sma_fast, p.sma_slow)
            for p in prices
            if p.sma_fast is not None and p.sma_slow is not None
        ),
        Counter((s, row[0], row[1], row[2]) for s, row in stored_indicators),
    )
    stored_signals = await influx_rows(
        influx_url, f"SELECT action FROM signal WHERE {where} GROUP BY symbol"
    )
    result.compare(
        "signal points",
        Counter((s.symbol, s.event_time_ms, s.action) for s in signals),
        Counter((s, row[0], row[1]) for s, row in stored_signals),
    )

    # Candles of the minutes that lie wholly inside the window.
    def inside(start_ms: int) -> bool:
        return window.start_ms <= start_ms and start_ms + MINUTE_MS <= window.end_ms

    derived = expected_candles(lake.prices.messages)
    minutes = [c for c in lake.candles.messages if c.interval == "1m"]
    result.compare(
        "candles in CANDLES",
        Counter(candle_key(c) for k, c in derived.items() if inside(k[1])),
        Counter(candle_key(c) for c in minutes if inside(c.start_ms)),
    )
    stored_candles = await influx_rows(
        influx_url,
        "SELECT open, high, low, close, count FROM candle "
        f"WHERE interval = '1m' AND {where} GROUP BY symbol",
    )
    result.compare(
        "candle points (1m)",
        Counter(candle_key(c) for c in minutes if inside(c.start_ms)),
        Counter((s, *row) for s, row in stored_candles if inside(row[0])),
    )
    return result


async def audit_until_clean(
    lake: Lake, bus: Bus, influx_url: str, window: Window, *, within: float, title: str
) -> Audit:
    """Audit ``window`` until it is clean (the pipeline caught up) or ``within`` s passed;
    prints the figures either way and fails with them when it never got clean."""
    deadline = time.monotonic() + within
    while True:
        result = await audit(lake, bus, influx_url, window)
        if result.clean or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    print("\n" + result.report(title), flush=True)
    assert result.clean, result.report(title)
    return result


async def ready(pipeline: Pipeline, process: ServiceProcess, within: float = 60.0) -> float:
    """Wait for ``process``'s /readyz; the seconds it took."""
    started = time.monotonic()
    await pipeline.wait_for(process, "/readyz", within)
    return time.monotonic() - started


async def wait_books(bus: Bus, count: int, within: float = 30.0) -> None:
    """Wait until ``count`` more books than now are in BOOKS (steady load keeps them coming)."""
    start = (await bus.jsm.stream_info(Stream.BOOKS.value)).state.last_seq
    deadline = time.monotonic() + within
    while (await bus.jsm.stream_info(Stream.BOOKS.value)).state.last_seq < start + count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} more books not published within {within:g}s")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_pipeline(
    workdir: Path, **kwargs: Any
) -> AsyncIterator[tuple[Pipeline, Bus, Lake]]:
    """A ready pipeline, a bus connected to its NATS, and a lake of its streams."""
    async with Pipeline(workdir, **kwargs) as pipeline:
        await pipeline.wait_ready(120)
        settings = pipeline.nats_settings()
        async with connect_bus(settings, name="e2e-test") as bus:
            yield pipeline, bus, Lake()
        # Every service did its job as its own NATS user, and nothing it was not allowed.
        assert pipeline.nats.refusals() == []


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pipeline")
