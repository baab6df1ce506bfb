"""The converter service against a real nats-server: output, determinism, scaling, kill -9."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import msgspec
import pytest
from prometheus_client import CollectorRegistry

from fairprice.common.bus import Bus, connect_bus, ensure_streams
from fairprice.common.feeds import STRATEGIES, AlertRule, Feed, Indicators, encode_feed
from fairprice.common.intervals import INTERVALS
from fairprice.common.kv import Bucket, open_bucket, snapshot
from fairprice.common.messages import Alert, Book, Candle, FairPrice, Latest, decode, encode
from fairprice.common.publisher import Publisher
from fairprice.common.settings import HttpSettings, NatsSettings, StreamsSettings
from fairprice.common.subjects import Stream, book_msg_id, books_partition_filter, books_subject
from fairprice.common.tail import StreamTail
from fairprice.common.testing import (
    NatsServer,
    eventually,
    nats_env_of,
    nats_settings_of,
    run_nats,
)
from fairprice.converter.candle_indicators import CandleIndicators, params_key
from fairprice.converter.fair_price import Skip
from fairprice.converter.params import Params
from fairprice.converter.service import run
from fairprice.converter.settings import ConverterSection, ConverterSettings
from fairprice.converter.symbol_pipeline import SymbolPipeline

INDICATORS = Indicators(
    rsi_period=5,
    macd_fast=3,
    macd_slow=6,
    macd_signal=3,
    bollinger_period=5,
    atr_period=5,
    rsi_overbought=60.0,
    rsi_oversold=40.0,
)
"""Short periods: indicators warm up and candle strategies signal within the test series."""
PARAMS = Params(
    sma_fast_s=5.0,
    sma_slow_s=20.0,
    min_gap=0.0002,
    intervals=INTERVALS,
    indicators=INDICATORS,
    strategies=frozenset(STRATEGIES),
)
"""Every candle interval, every indicator and every strategy on."""
SYMBOLS = ("AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT", "EEEUSDT", "FFFUSDT")
OUTPUT_STREAMS = (Stream.PRICES, Stream.SIGNALS, Stream.CANDLES, Stream.ALERTS)
ALERT_RULES = (
    AlertRule(name="quiet", kind="stale", seconds=60),
    AlertRule(name="sma-buy", kind="signal", strategy="sma_cross", action="BUY"),
    AlertRule(name="rsi", kind="signal", strategy="rsi_reversal"),
    AlertRule(name="any-signal", kind="signal"),
    AlertRule(name="move", kind="move", percent=0.5, window_seconds=120),
)
"""Alerts of every kind whose state is not a level of one symbol's price."""
ALERT_FEED = Feed(
    exchange="sim",
    symbols=list(SYMBOLS),
    sma_fast_s=PARAMS.sma_fast_s,
    sma_slow_s=PARAMS.sma_slow_s,
    candle_intervals=list(PARAMS.intervals),
    indicators=INDICATORS,
    strategies=list(STRATEGIES),
    alerts=ALERT_RULES,
)
"""``PARAMS`` with ``ALERT_RULES``, as a feed in KV (the way the operator gives rules)."""
STREAMS = StreamsSettings(partitions=64)
"""Many partitions: the six symbols almost surely land in six of them, so a new replica almost
surely takes at least one symbol from the first (1 - 3**-6)."""

Outputs = set[tuple[str, str, bytes]]
"""(stream, message id, payload) of everything in the output streams."""


def _converter_section(**overrides: object) -> ConverterSection:
    values: dict[str, object] = {
        "sma_fast_s": PARAMS.sma_fast_s,
        "sma_slow_s": PARAMS.sma_slow_s,
        "min_gap": PARAMS.min_gap,
        "candle_intervals": list(INTERVALS),
        "indicators": msgspec.structs.asdict(INDICATORS),
        "strategies": list(STRATEGIES),
        "heartbeat_s": 0.2,
        "member_ttl_s": 1.0,
        "latest_interval_s": 0.2,
        "http": HttpSettings(host="127.0.0.1", port=0),
    }
    values.update(overrides)
    return ConverterSection.model_validate(values)


def _settings(nats: NatsSettings, **overrides: object) -> ConverterSettings:
    return ConverterSettings(
        nats=nats.model_copy(update={"streams": STREAMS}), converter=_converter_section(**overrides)
    )


def _expected(books: dict[str, list[Book]], params: dict[str, Params] | None = None) -> Outputs:
    """What a lone converter must publish: the pipeline run over each symbol's books."""
    expected: Outputs = set()
    for symbol, symbol_books in books.items():
        pipeline = SymbolPipeline("sim", symbol, (params or {}).get(symbol, PARAMS))
        for book in symbol_books:
            result = pipeline.process(book)
            if not isinstance(result, Skip):
                expected.update((stream.value, msg_id, data) for stream, _, data, msg_id in result)
    return expected


async def _collect(bus: Bus) -> tuple[Outputs, int]:
    """Everything in PRICES, SIGNALS and CANDLES, and how many messages that was."""
    found: Outputs = set()
    count = 0
    for stream in OUTPUT_STREAMS:
        async with StreamTail(bus, stream, stream.wildcard) as tail:
            while not tail.caught_up:
                for msg in await tail.next_batch(1000, 1.0):
                    assert msg.headers is not None
                    found.add((stream.value, msg.headers["Nats-Msg-Id"], msg.data))
                    count += 1
    return found, count


async def _stored(bus: Bus, stream: Stream) -> int:
    return (await bus.jsm.stream_info(stream.value)).state.messages


async def _wait_for_outputs(bus: Bus, expected: Outputs, within: float = 60.0) -> None:
    wanted = {
        stream: sum(1 for kind, _, _ in expected if kind == stream.value)
        for stream in OUTPUT_STREAMS
    }

    async def complete() -> bool:
        return all([await _stored(bus, stream) >= n for stream, n in wanted.items()])

    await eventually(complete, within=within, interval=0.1, what=f"outputs {wanted}")


async def _publish(bus: Bus, books: list[Book]) -> None:
    async with Publisher(bus.nc) as publisher:
        for book in books:
            await publisher.publish(
                books_subject(book.exchange, book.symbol),
                encode(book),
                book_msg_id(book.exchange, book.symbol, book.update_id),
            )


async def _publish_in_chunks(bus: Bus, books: list[Book], size: int = 50) -> None:
    """Publish a chunk at a time, letting the replicas run in between."""
    for start in range(0, len(books), size):
        await _publish(bus, books[start : start + size])


def _interleave(books: dict[str, list[Book]]) -> list[Book]:
    """All symbols' books in one stream, ordered by event time as a crawler would send them."""
    return sorted((b for bs in books.values() for b in bs), key=lambda b: b.event_time_ms)


@pytest.fixture
def books(make_long_books: Callable[..., list[Book]]) -> dict[str, list[Book]]:
    """Six symbols over two hours across a UTC midnight: candles of every interval close,
    indicators warm up, every strategy signals."""
    return {symbol: make_long_books(symbol, 600, seed=3) for symbol in SYMBOLS}


def test_the_test_series_exercises_every_output(books: dict[str, list[Book]]) -> None:
    """What the service tests compare includes candles of every interval with indicators
    and signals of every strategy (so a converter dropping any of them fails them)."""
    outputs = _expected(books)
    candles = [decode(data, Candle) for kind, _, data in outputs if kind == "CANDLES"]
    assert {c.interval for c in candles} == set(INTERVALS)
    assert any(c.macd_hist is not None and c.atr is not None for c in candles)
    strategies = {msg_id.split(":")[3] for kind, msg_id, _ in outputs if kind == "SIGNALS"}
    assert strategies == set(STRATEGIES)


@pytest.fixture
async def streams(bus: Bus) -> Bus:
    await ensure_streams(bus.jsm, STREAMS)
    return bus


@pytest.fixture
def converter_nats(nats_server: NatsServer) -> NatsSettings:
    """The converter's own NATS user: every replica here runs with its permissions."""
    return nats_settings_of(nats_server, "converter")


@contextlib.asynccontextmanager
async def _replica(nats: NatsSettings, **overrides: object) -> AsyncIterator[CollectorRegistry]:
    """An in-process converter replica; yields its metrics once it is ready; stopped on exit."""
    stop, ready = asyncio.Event(), asyncio.Event()
    registry = CollectorRegistry()
    task = asyncio.create_task(
        run(_settings(nats, **overrides), stop=stop, ready=ready, registry=registry)
    )
    try:
        await eventually(lambda: ready.is_set() or task.done(), within=30, what="replica ready")
        if task.done():
            task.result()
        yield registry
    finally:
        stop.set()
        await task


async def test_converter_publishes_what_the_pipeline_computes(
    streams: Bus, converter_nats: NatsSettings, books: dict[str, list[Book]]
) -> None:
    """Books published before and after start: every price, signal and candle, once."""
    expected = _expected(books)
    ordered = _interleave(books)
    await _publish(streams, ordered[:1000])  # history the converter finds at start
    async with _replica(converter_nats):
        await _publish(streams, ordered[1000:])  # live
        await _wait_for_outputs(streams, expected)

        async def latest_written() -> bool:
            return len(await snapshot(streams, Bucket.LATEST)) == len(SYMBOLS)

        await eventually(latest_written, what="latest values in KV")
    found, count = await _collect(streams)
    assert found == expected
    assert count == len(expected)  # no duplicates stored
    assert {kind for kind, _, _ in found} == {s.value for s in OUTPUT_STREAMS} - {"ALERTS"}
    entries = await snapshot(streams, Bucket.LATEST)
    latest = decode(entries["sim.AAAUSDT"], Latest)
    last_book = books["AAAUSDT"][-1]
    assert latest.update_id <= last_book.update_id
    assert latest.price > 0


async def test_converter_replay_gives_byte_identical_outputs(
    streams: Bus, converter_nats: NatsSettings, books: dict[str, list[Book]]
) -> None:
    """The same BOOKS, converted twice (output streams deleted in between, which also clears
    their duplicate windows): the same bytes."""
    await _publish(streams, _interleave(books))
    expected = _expected(books)
    async with _replica(converter_nats):
        await _wait_for_outputs(streams, expected)
    first, _ = await _collect(streams)
    for stream in OUTPUT_STREAMS:
        await streams.jsm.delete_stream(stream.value)
    await ensure_streams(streams.jsm, STREAMS)
    async with _replica(converter_nats):
        await _wait_for_outputs(streams, expected)
    second, count = await _collect(streams)
    assert first == second == expected
    assert count == len(expected)


async def test_converter_metrics_and_readiness(
    streams: Bus, converter_nats: NatsSettings, books: dict[str, list[Book]]
) -> None:
    """Ready with nothing to do; then every book counted, skips by reason, one takeover per
    symbol (each new symbol is rebuilt once), all partitions owned."""
    async with _replica(converter_nats) as registry:

        def value(name: str, **labels: str) -> float:
            return registry.get_sample_value(f"fairprice_converter_{name}", labels) or 0.0

        assert value("owned_partitions") == 64
        assert value("owned_symbols") == 0
        await _publish(streams, _interleave(books))
        await _wait_for_outputs(streams, _expected(books))
        total = sum(len(b) for b in books.values())
        await eventually(lambda: value("books_total") == total, what="books counted")
        await eventually(lambda: value("rebuilds_total") == len(SYMBOLS), what="rebuilds")
        assert value("books_skipped_total", reason="crossed") > 0
        assert value("books_skipped_total", reason="one_sided") > 0
        assert value("owned_symbols") == len(SYMBOLS)
        assert value("rebuilding_symbols") == 0
        assert value("prices_total") == sum(
            1 for kind, _, _ in _expected(books) if kind == Stream.PRICES.value
        )
        for action in ("BUY", "SELL"):  # a book may signal for several strategies at once
            assert value("signals_total", action=action) == sum(
                1
                for kind, msg_id, _ in _expected(books)
                if kind == Stream.SIGNALS.value and msg_id.endswith(f":{action}")
            )


async def test_converter_scaling_one_three_one_changes_no_output(
    streams: Bus,
    converter_nats: NatsSettings,
    nats_server: NatsServer,
    books: dict[str, list[Book]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A run that goes 1 -> 3 -> 1 replicas while books flow publishes exactly what one
    converter alone publishes (message ids and bytes), with no duplicates."""
    ordered = _interleave(books)
    expected = _expected(books)
    third = len(ordered) // 3

    # The reference: one converter, alone, on a broker of its own.
    async with run_nats(tmp_path_factory.mktemp("nats-alone")) as alone_server:
        alone = NatsSettings(servers=[alone_server.url], reconnect_wait_s=0.2)
        async with connect_bus(alone, name="reference") as alone_bus:
            await ensure_streams(alone_bus.jsm, STREAMS)
            await _publish(alone_bus, ordered)
            async with _replica(alone):
                await _wait_for_outputs(alone_bus, expected)
            reference, _ = await _collect(alone_bus)

    def owned(registry: CollectorRegistry, what: str = "partitions") -> float:
        return registry.get_sample_value(f"fairprice_converter_owned_{what}") or 0.0

    async with _replica(converter_nats) as first:
        await _publish_in_chunks(streams, ordered[:third])
        async with contextlib.AsyncExitStack() as others:
            # Member ids are random, so with two new replicas the first keeps all six symbols
            # about once in 500 runs; then one more joins, until a symbol really moves.
            for extra in range(1, 5):
                await others.enter_async_context(_replica(converter_nats))
                if extra < 2:
                    continue
                await eventually(lambda: owned(first) < 64, what="partitions moved away")
                if owned(first, "symbols") < len(SYMBOLS):
                    break
            await eventually(
                lambda: owned(first, "symbols") < len(SYMBOLS), what="symbols moved away"
            )
            await _publish_in_chunks(streams, ordered[third : 2 * third])
            # back to one: the others leave while the last third arrives
            last_third = asyncio.create_task(_publish_in_chunks(streams, ordered[2 * third :]))
        await last_third
        await _wait_for_outputs(streams, expected)
        # The last books may all be handled before the first notices that the others left;
        # then it takes every partition back, rebuilding the symbols it had lost.
        await eventually(
            lambda: (
                owned(first) == 64
                and (first.get_sample_value("fairprice_converter_rebuilds_total") or 0.0)
                > len(SYMBOLS)
            ),
            what="every partition and symbol back on the first",
        )
    scaled, count = await _collect(streams)
    assert reference == expected
    assert scaled == reference
    assert count == len(scaled)


async def test_converter_replicas_receive_only_the_books_of_their_partitions(
    streams: Bus, converter_nats: NatsSettings, books: dict[str, list[Book]]
) -> None:
    """Three replicas share BOOKS: together they receive every book once (not three times),
    because each one's consumer filters the partitions it owns, and they publish exactly what
    one converter would."""
    ordered = _interleave(books)

    def sample(registry: CollectorRegistry, name: str) -> float:
        return registry.get_sample_value(f"fairprice_converter_{name}") or 0.0

    async with contextlib.AsyncExitStack() as stack:
        replicas = [await stack.enter_async_context(_replica(converter_nats)) for _ in range(3)]
        await eventually(
            lambda: (
                sum(sample(r, "owned_partitions") for r in replicas) == STREAMS.partitions
                and all(sample(r, "owned_partitions") for r in replicas)
            ),
            what="partitions shared by the three",
        )
        await _publish(streams, ordered)
        await _wait_for_outputs(streams, _expected(books))
        received = [sample(r, "books_received_total") for r in replicas]
        processed = [sample(r, "books_total") for r in replicas]
        every = sorted(books_partition_filter(p) for p in range(STREAMS.partitions))
        # A live consumer per owned partition, each of one filter (nats-server serves several
        # filters at ~4x the CPU when behind), together every partition once (and none
        # filters the whole stream).
        filters = await _live_filters(
            streams,
            lambda found: sorted(f for own in found for f in own) == every,
            what="a live consumer for each partition",
        )
    print(f"books {len(ordered)}; received per replica {received}; processed {processed}")
    assert sum(received) == len(ordered)
    assert received == processed  # nothing delivered that the replica does not own
    assert (await _collect(streams))[0] == _expected(books)
    assert all(len(own) == 1 for own in filters)


async def test_a_lone_converter_reads_books_through_one_filter(
    streams: Bus, converter_nats: NatsSettings, books: dict[str, list[Book]]
) -> None:
    """Owning every partition, a replica's live consumer has the one filter ``books.>``, not
    one per partition (which nats-server serves at ~3x the CPU while the consumer is behind:
    bench/filters.py)."""
    ordered = _interleave(books)
    async with _replica(converter_nats):
        await _publish(streams, ordered)
        await _wait_for_outputs(streams, _expected(books))
        assert await _live_filters(
            streams, lambda found: len(found) == 1, what="one live consumer"
        ) == [[Stream.BOOKS.wildcard]]


async def _live_filters(
    streams: Bus, settled: Callable[[list[list[str]]], bool], what: str
) -> list[list[str]]:
    """The filters of the converters' consumers of BOOKS (one list per consumer), once they
    are ``settled``: a takeover's replay tails go when it is done, and a replica whose
    partitions changed replaces its live tail's consumer a moment after its metric says so."""
    found: list[list[str]] = []

    async def done() -> bool:
        infos = await streams.jsm.consumers_info(Stream.BOOKS.value)
        found[:] = sorted(
            sorted(i.config.filter_subjects or [i.config.filter_subject or ""]) for i in infos
        )
        return settled(found)

    await eventually(done, what=what)
    return found


def _spawn(nats: NatsServer, workdir: Path, log_name: str | None = None) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FAIRPRICE_CONFIG": str(workdir / "empty.toml"),
        **nats_env_of(nats, "converter"),
        "FAIRPRICE_NATS__RECONNECT_WAIT_S": "0.2",
        "FAIRPRICE_LOG__FORMAT": "json",
    }
    section = _converter_section()
    env["FAIRPRICE_NATS__STREAMS__PARTITIONS"] = str(STREAMS.partitions)
    for key in ("sma_fast_s", "sma_slow_s", "min_gap", "heartbeat_s"):
        env[f"FAIRPRICE_CONVERTER__{key.upper()}"] = str(getattr(section, key))
    env["FAIRPRICE_CONVERTER__CANDLE_INTERVALS"] = json.dumps(section.candle_intervals)
    env["FAIRPRICE_CONVERTER__STRATEGIES"] = json.dumps(section.strategies)
    for key, value in section.indicators.model_dump().items():
        env[f"FAIRPRICE_CONVERTER__INDICATORS__{key.upper()}"] = str(value)
    env["FAIRPRICE_CONVERTER__MEMBER_TTL_S"] = "1.0"
    env["FAIRPRICE_CONVERTER__HTTP__PORT"] = "0"
    env["FAIRPRICE_CONVERTER__HTTP__HOST"] = "127.0.0.1"
    (workdir / "empty.toml").write_text("")
    log_name = log_name or f"converter-{len(list(workdir.glob('*.log')))}.log"
    with (workdir / log_name).open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "fairprice.converter"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )


async def test_converter_sigkill_changes_no_output(
    streams: Bus,
    nats_server: NatsServer,
    books: dict[str, list[Book]],
    tmp_path: Path,
) -> None:
    """Replicas as real processes, killed with SIGKILL: first one of two mid-stream (the other
    takes its partitions over), then the only one left (a fresh one resumes). The outputs are
    exactly the lone converter's, with no duplicates: market alerts of a feed's rules too
    (gaps, signals of each strategy, moves)."""
    feeds_kv = await open_bucket(streams.js, Bucket.FEEDS)
    await feeds_kv.put("default.all", encode_feed(ALERT_FEED))
    ordered = _interleave(books)
    with_alerts = dataclasses.replace(PARAMS, alerts=ALERT_RULES)
    expected = _expected(books, dict.fromkeys(SYMBOLS, with_alerts))
    third = len(ordered) // 3
    first, second = _spawn(nats_server, tmp_path), _spawn(nats_server, tmp_path)
    fresh: subprocess.Popen[bytes] | None = None
    try:
        await _publish(streams, ordered[:third])
        half = _price_count(ordered[:third]) // 2
        await eventually(lambda: _prices_at_least(streams, half), within=30, what="prices")
        first.send_signal(signal.SIGKILL)
        await _publish(streams, ordered[third : 2 * third])
        # the survivor owns everything once the dead one's heartbeat expires, and catches up
        done = _price_count(ordered[: 2 * third])
        await eventually(lambda: _prices_at_least(streams, done), within=30, what="takeover")
        await _publish(streams, ordered[2 * third :])
        second.send_signal(signal.SIGKILL)  # the only replica left
        fresh = _spawn(nats_server, tmp_path, "fresh.log")
        await _wait_for_outputs(streams, expected)
        # The last books may all be priced before ``second`` died: wait until the fresh one
        # runs (it takes SIGTERM gracefully only from then on) rather than stop it mid-start.
        await eventually(
            lambda: '"converter starting"' in (tmp_path / "fresh.log").read_text(),
            within=30,
            what="the fresh replica started",
        )
    finally:
        for process in (first, second, fresh):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(15)
    assert first.returncode == second.returncode == -signal.SIGKILL
    assert fresh is not None and fresh.returncode == 0  # a graceful SIGTERM
    found, count = await _collect(streams)
    assert found == expected
    assert count == len(expected)
    fired = {decode(data, Alert).rule for kind, _, data in found if kind == Stream.ALERTS.value}
    assert fired == {rule.name for rule in ALERT_RULES}


def _price_count(books: list[Book]) -> int:
    by_symbol: dict[str, list[Book]] = {}
    for book in books:
        by_symbol.setdefault(book.symbol, []).append(book)
    return sum(1 for kind, _, _ in _expected(by_symbol) if kind == Stream.PRICES.value)


async def _prices_at_least(bus: Bus, count: int) -> bool:
    return await _stored(bus, Stream.PRICES) >= count


async def test_converter_feed_parameters_apply_per_symbol(
    streams: Bus, converter_nats: NatsSettings, books: dict[str, list[Book]]
) -> None:
    """A feed in KV ``feeds`` picks the method and windows of its symbols; the others keep
    the settings' defaults."""
    feeds_kv = await open_bucket(streams.js, Bucket.FEEDS)
    feed = Feed(exchange="sim", symbols=["AAAUSDT"], method="mid", sma_fast_s=2.0, sma_slow_s=8.0)
    await feeds_kv.put("default.aaa", encode_feed(feed))
    await _publish(streams, _interleave(books))
    feed_params = Params(method="mid", sma_fast_s=2.0, sma_slow_s=8.0, min_gap=PARAMS.min_gap)
    expected = _expected(books, {"AAAUSDT": feed_params})
    async with _replica(converter_nats):
        await _wait_for_outputs(streams, expected)
    found, _ = await _collect(streams)
    assert found == expected
    methods = {
        decode(data, FairPrice).method
        for kind, msg_id, data in found
        if kind == Stream.PRICES.value and msg_id.startswith("sim:AAAUSDT:")
    }
    assert methods == {"mid"}


async def test_converter_survives_broker_restart(
    streams: Bus,
    converter_nats: NatsSettings,
    nats_server: NatsServer,
    books: dict[str, list[Book]],
) -> None:
    """nats-server restarts mid-stream (same port, same data): the converter's tail and
    publisher recover, and the outputs are complete, once each."""
    ordered = _interleave(books)
    expected = _expected(books)
    half = len(ordered) // 2
    async with _replica(converter_nats):
        await _publish(streams, ordered[:half])
        await eventually(lambda: _prices_at_least(streams, 100), what="first prices")
        await nats_server.restart()
        await eventually(lambda: streams.nc.is_connected, within=30, what="test reconnected")
        await _publish(streams, ordered[half:])
        await _wait_for_outputs(streams, expected)
    found, count = await _collect(streams)
    assert found == expected
    assert count == len(expected)


async def test_converter_process_serves_probes_and_stops_on_sigterm(
    streams: Bus, nats_server: NatsServer, tmp_path: Path
) -> None:
    """``python -m fairprice.converter``: /healthz, /readyz once its partitions are placed,
    /metrics, and a SIGTERM that leaves the membership and exits 0."""
    process = _spawn(nats_server, tmp_path, "probe.log")
    log = tmp_path / "probe.log"

    def events() -> list[dict[str, object]]:
        return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]

    try:
        await eventually(
            lambda: any(e["event"] == "http listening" for e in events()), what="http up"
        )
        port = next(e["port"] for e in events() if e["event"] == "http listening")
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:

            async def status(path: str) -> int:
                async with http.get(base + path) as response:
                    return response.status

            assert await status("/healthz") == 200
            await eventually(lambda: _is(status("/readyz"), 200), within=30, what="ready")
            async with http.get(base + "/metrics") as response:
                metrics = await response.text()
        assert "fairprice_converter_owned_partitions 64.0" in metrics
        assert 'fairprice_converter_books_skipped_total{reason="crossed"}' in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 15)
    assert process.returncode == 0
    assert any(e["event"] == "left" for e in events())


async def _is(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_converter_indicator_parameters_change_live_from_the_next_candle(
    streams: Bus, converter_nats: NatsSettings, books: dict[str, list[Book]]
) -> None:
    """A feed's new indicator parameters (written to KV ``feeds``, as the operator does for a
    changed MarketFeed) reach a running converter: the candles before the change carry the
    old indicators, every candle after it the new ones, computed afresh from the next candle
    on; the prices do not change."""
    feeds_kv = await open_bucket(streams.js, Bucket.FEEDS)
    old, new = INDICATORS, Indicators(rsi_period=3, bollinger_period=3, atr_period=3)

    def feed(indicators: Indicators) -> bytes:
        return encode_feed(
            Feed(
                exchange="sim",
                symbols=["AAAUSDT"],
                sma_fast_s=PARAMS.sma_fast_s,
                sma_slow_s=PARAMS.sma_slow_s,
                candle_intervals=list(INTERVALS),
                indicators=indicators,
                strategies=list(STRATEGIES),
            )
        )

    await feeds_kv.put("default.aaa", feed(old))
    series = books["AAAUSDT"]
    half = len(series) // 2
    before = _expected({"AAAUSDT": series[:half]})
    async with _replica(converter_nats, feeds_refresh_s=0.2) as registry:
        await _publish(streams, series[:half])
        await _wait_for_outputs(streams, before)
        await feeds_kv.put("default.aaa", feed(new))

        def rebuilds() -> float:
            return registry.get_sample_value("fairprice_converter_rebuilds_total") or 0.0

        await eventually(lambda: rebuilds() == 2, what="the symbol rebuilt with new parameters")
        await _publish(streams, series[half:])
        prices = {o for o in _expected({"AAAUSDT": series}) if o[0] == Stream.PRICES.value}
        # Candles of a book are published before its price: all prices stored, all stored.
        await eventually(lambda: _prices_at_least(streams, len(prices)), what="all prices")
    found, _ = await _collect(streams)
    assert {o for o in found if o[0] == Stream.PRICES.value} == prices
    assert {o for o in before if o[0] == Stream.CANDLES.value} <= found
    earlier = {decode(data, Candle).start_ms for kind, _, data in before if kind == "CANDLES"}
    minutes = sorted(
        (
            candle
            for kind, _, data in found
            if kind == Stream.CANDLES.value and (candle := decode(data, Candle)).interval == "1m"
        ),
        key=lambda candle: candle.start_ms,
    )
    changed = [candle for candle in minutes if candle.start_ms not in earlier]
    assert len(changed) > 10
    for candle in minutes[: len(minutes) - len(changed)]:
        assert candle.state is not None and candle.state.params == params_key(old)
    fresh = CandleIndicators(new)
    for candle in changed:
        assert candle.state is not None and candle.state.params == params_key(new)
        values = fresh.push(candle.high, candle.low, candle.close)
        assert (candle.rsi, candle.bb_upper, candle.atr, candle.macd_hist) == (
            values.rsi,
            values.bb_upper,
            values.atr,
            values.macd_hist,
        )
    assert changed[-1].rsi is not None and changed[-1].bb_upper is not None


async def test_converter_resumes_day_candles_and_indicators_when_books_hold_only_a_minute(
    streams: Bus, converter_nats: NatsSettings, make_books: Callable[..., list[Book]]
) -> None:
    """A session from 22:00 to past midnight; the converter stops at about 23:30, BOOKS is then
    purged down to the last price's minute (as retention does to older books), and a fresh one
    takes over. The day, 4-hour and hour candles it closes at midnight (open since 22:00) and
    every indicator after the stop are exactly those of a converter that never stopped: they
    come from CANDLES, not from BOOKS."""
    midnight = 1_700_006_400_000
    series = make_books(
        "AAAUSDT", 600, seed=3, start_ms=midnight - 7_200_000, gaps_ms=(20, 120_000)
    )
    assert series[-1].event_time_ms > midnight
    cut = len(series) * 2 // 3
    assert series[cut].event_time_ms < midnight
    before = _expected({"AAAUSDT": series[:cut]})
    async with _replica(converter_nats):
        await _publish(streams, series[:cut])
        await _wait_for_outputs(streams, before)
    last = max(
        (decode(data, FairPrice) for kind, _, data in before if kind == Stream.PRICES.value),
        key=lambda price: price.update_id,
    )
    replay_from = min(
        last.event_time_ms - round(PARAMS.sma_slow_s * 1000),
        last.event_time_ms - last.event_time_ms % 60_000,
    )
    keep = sum(1 for book in series[:cut] if book.event_time_ms >= replay_from)
    assert keep < cut // 10  # BOOKS keeps a sliver of the history
    await streams.jsm.purge_stream(
        Stream.BOOKS.value, subject=books_subject("sim", "AAAUSDT"), keep=keep
    )
    expected = _expected({"AAAUSDT": series})
    async with _replica(converter_nats):
        await _publish(streams, series[cut:])
        await _wait_for_outputs(streams, expected)
    found, count = await _collect(streams)
    assert found == expected
    assert count == len(expected)
    after = [
        decode(data, Candle) for kind, _, data in expected - before if kind == Stream.CANDLES.value
    ]
    assert {c.interval for c in after if c.start_ms < last.event_time_ms - 3_600_000} >= {
        "4h",
        "1d",
    }  # open long before what BOOKS kept
    assert any(c.rsi is not None and c.macd_hist is not None for c in after)
