"""Whole-pipeline capacity and latency: simulator -> crawler -> converter -> storer -> influxd.

    uv run --group peer python bench/end_to_end.py [--quick] [--seconds 60]
        [--steps 250 500 1000 1500 2000] [--peer-steps 25 50 100 250 500 1000]
        [--modes interval full] [--profile] [--converter all]

Every part runs as a real process (``fairprice.cli.processes.Pipeline``: nats-server, influxd,
simulator, storer, converter, crawler on free loopback ports, ``FAIRPRICE_*`` env only). For each
books mode and each symbol count (every symbol a ``@depth@100ms`` stream, 10 diff events a
second, 1,000-level snapshots), a fresh pipeline is started, every symbol synced, warmed up,
then measured for ``--seconds``. Symbol counts go up until one is not kept up with; with
``--bisect`` the gap between the last kept-up count and the first that failed is halved.

The peer runs in the same run (bench/peer.py): cryptofeed 2.4.1 on the same simulator with the
same symbols and load, storing the same data with its own InfluxDB backend (every book's top 20
beside ``full``, a mid price beside ``interval``). Its steps alternate with fairprice's, each
system up its own ladder (``--steps``, ``--peer-steps``; the peer's starts lower); the report
sets their highest kept-up events/s and CPU per 1,000 events side by side, with the ratio
(target >= 5x) and the share of the peer's books whose top 20 is not the true book.
``--peer-steps`` with no counts leaves the peer out.

Keeping up ("bounded lag"), over the measured window:
- the crawler applies >= 95% of the 10 events/s per symbol asked for;
- end-to-end latency p99 (exchange event time -> InfluxDB acknowledgement, the storer's own
  histogram) of books and of fair prices <= ``LAG_BOUND_S``;
- no backlog at the end: the converter's and the storer's consumers have at most
  ``LAG_BOUND_S`` seconds of their input undelivered.

Books modes: ``interval`` (``FAIRPRICE_STORER__BOOKS__MODE=interval``, one book per symbol per
second; prices, signals, candles all stored; target >= 10,000 events/s) and ``full`` (every
changed top-20 book stored; target >= 5,000 events/s); both: p99 <= 500 ms, <= 2 MB resident
per symbol at book depth 1000.

The same run first measures the ceilings of the parts (bench/bus.py: our Publisher and
PullConsumer on a bare nats-server from one Python client; bench/storer.py: pre-built book line
protocol posted straight to a bare influxd) and prints each stage's throughput as a share of
its ceiling. ``--profile`` samples each Python stage with py-spy for ``--profile-seconds`` after
every measured window and prints the functions it spent its CPU in.

``--converter``: ``default`` (the converter's settings' defaults), ``1m`` (1-minute candles and
the SMA crossover only) or ``all`` (candles of every interval, every indicator, every strategy);
run ``1m`` and ``all`` back to back to see what the candle analytics cost the whole pipeline.

Prints tables and writes bench/results/pipeline.json (py-spy stacks: bench/results/profiles/;
the peer's steps under ``peer_steps``, the comparison under ``peer``). Every process it starts
dies with it, whatever ends it (``Pipeline``; py-spy too).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from _ladder import Ladder
from _metrics import Metrics, parse, quantiles, value
from _report import RESULTS, report, table
from _step import EVENTS_PER_SYMBOL_S, FEED_SHARE, LAG_BOUND_S, SIMULATOR_ENV, Stage, busy
from bus import jetstream_ceilings
from crawler import memory_per_symbol
from peer import (
    PEER_GRAIN,
    PeerStep,
    compare,
    print_comparison,
    print_peer_steps,
    run_peer_step,
)
from storer import book_bodies, ceiling, make_books

from fairprice.cli.processes import SERVICES, Pipeline
from fairprice.common.feeds import STRATEGIES
from fairprice.common.intervals import INTERVALS
from fairprice.common.lifecycle import die_with_parent
from fairprice.common.messages import encode

DEFAULT_STEPS = [250, 500, 750, 1000, 1500, 2000]
TARGET_EVENTS_S = {"interval": 10_000, "full": 5_000}
TARGET_P99_S = 0.5
TARGET_RSS_PER_SYMBOL = 2 * 2**20
SNAPSHOT_LIMIT = 100
"""Weight 5 a snapshot: the exchange adapter caps the budget at 6,000 a minute (1,200 symbols)."""
PROCESSES = (*SERVICES, "nats-server", "influxd")


@dataclass
class Sample:
    at: float
    metrics: dict[str, Metrics]
    """Parsed /metrics of each service."""
    cpu: dict[str, float]
    """User + system CPU seconds of each process."""
    rss: dict[str, int]
    busy: float
    """CPU seconds the whole machine spent not idle (every process, ours or not)."""


@dataclass
class Step:
    mode: str
    symbols: int
    seconds: float
    load_average: tuple[float, float, float]
    asked_events_s: float
    simulated_events_s: float
    events_s: float
    """Diff events the crawler applied a second."""
    books_published_s: float
    converter_books_s: float
    prices_s: float
    books_stored_s: float
    messages_stored_s: float
    points_s: float
    e2e_s: dict[str, dict[str, float | None]]
    """Per stream: p50, p95, p99 (interpolated in the storer's histogram buckets)."""
    backlog_end: dict[str, float]
    backlog_max: dict[str, float]
    stages: dict[str, Stage]
    machine_busy_cores: float
    """Every process on the machine (other work included) over the window; 2.0 = saturated."""
    keeps_up: bool
    limits: list[str]
    """Why not kept up (empty when kept up)."""
    rss_per_symbol_mb: dict[str, float]
    resyncs: dict[str, float]
    """Crawler snapshot (re)syncs during the window, by reason."""
    profile: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    """Per Python stage: (function, share of its samples), the top self-time frames."""


def processes_of(pipeline: Pipeline) -> dict[str, psutil.Process]:
    procs = {}
    for name in SERVICES:
        proc = pipeline.replicas(name)[0].proc
        assert proc is not None
        procs[name] = psutil.Process(proc.pid)
    for name, server in (("nats-server", pipeline.nats), ("influxd", pipeline.influxd)):
        assert server.process is not None
        procs[name] = psutil.Process(server.process.pid)
    return procs


async def take_sample(
    pipeline: Pipeline, procs: dict[str, psutil.Process], services: Sequence[str] = SERVICES
) -> Sample:
    """Scrape ``services`` (parsing costs the bench CPU the pipeline could use: only those
    needed) and read every process's CPU time and RSS."""
    metrics = {}
    for name in services:
        metrics[name] = parse(await pipeline.metrics(pipeline.replicas(name)[0]))
    return Sample(
        at=time.monotonic(),
        metrics=metrics,
        cpu={name: sum(p.cpu_times()[:2]) for name, p in procs.items()},
        rss={name: p.memory_info().rss for name, p in procs.items()},
        busy=busy(),
    )


def backlogs_of(sample: Sample) -> dict[str, float]:
    converter, storer = sample.metrics["converter"], sample.metrics["storer"]
    backlog = {"converter": value(converter, "fairprice_converter_consumer_pending_messages")}
    for stream in ("books", "prices", "signals", "candles"):
        backlog[f"storer.{stream}"] = value(
            storer, "fairprice_storer_consumer_lag_messages", stream=stream
        )
    return backlog


CONVERTER_ENV = {
    "default": {},
    "1m": {
        "FAIRPRICE_CONVERTER__CANDLE_INTERVALS": '["1m"]',
        "FAIRPRICE_CONVERTER__STRATEGIES": '["sma_cross"]',
    },
    "all": {
        "FAIRPRICE_CONVERTER__CANDLE_INTERVALS": json.dumps(INTERVALS),
        "FAIRPRICE_CONVERTER__STRATEGIES": json.dumps(STRATEGIES),
    },
}


def step_env(mode: str, symbols: int, converter: str = "default") -> dict[str, dict[str, str]]:
    """Snapshots paced by a budget large enough to sync every symbol in seconds, not minutes;
    the converter's candles, indicators and strategies by ``converter`` (``CONVERTER_ENV``)."""
    return {
        "converter": CONVERTER_ENV[converter],
        "simulator": SIMULATOR_ENV,
        "crawler": {
            "FAIRPRICE_CRAWLER__SNAPSHOT_LIMIT": str(SNAPSHOT_LIMIT),
            "FAIRPRICE_CRAWLER__WEIGHT_BUDGET": str(10**8),
            "FAIRPRICE_CRAWLER__SNAPSHOT_CONCURRENCY": "4",
            "FAIRPRICE_CRAWLER__BUFFER_LIMIT": str(max(10_000, 20 * EVENTS_PER_SYMBOL_S * 60)),
        },
        "storer": {"FAIRPRICE_STORER__BOOKS__MODE": mode},
    }


async def _profile(pid: int, seconds: float, out: Path) -> list[tuple[str, float]]:
    """py-spy samples of ``pid`` for ``seconds``: the top self-time functions, by share."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    proc = await asyncio.create_subprocess_exec(
        spy,
        "record",
        "--nonblocking",
        "--format",
        "raw",
        "--duration",
        str(round(seconds)),
        "--rate",
        "200",
        "--pid",
        str(pid),
        "--output",
        str(out),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,  # a bench that dies mid-profile takes py-spy with it
    )
    await proc.wait()
    return _top_frames(out)


def _top_frames(out: Path) -> list[tuple[str, float]]:
    """py-spy's raw stacks folded by their innermost frame (function and file, no line)."""
    if not out.exists():
        return []
    own: Counter[str] = Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        # "function (path/to/module.py:123)": by function and file, without the line.
        frame = re.sub(r":\d+\)$", ")", stack.rsplit(";", 1)[-1])
        frame = re.sub(r"\(.*/(site-packages|src|lib/python3\.\d+)/", "(", frame)
        own[frame] += n
    return [(frame, n / total) for frame, n in own.most_common(12)] if total else []


async def run_step(
    mode: str,
    symbols: int,
    seconds: float,
    warmup: float,
    profile_s: float,
    sync_s: float,
    workdir: Path,
    converter: str = "default",
) -> Step:
    names = [f"SIM{n:04d}USDT" for n in range(symbols)]
    asked = symbols * EVENTS_PER_SYMBOL_S
    print(f"-- {mode}: {symbols} symbols ({asked:,} events/s asked) ...", flush=True)
    async with Pipeline(workdir, symbols=names, env=step_env(mode, symbols, converter)) as pipeline:
        started = time.monotonic()
        synced = await sync_symbols(pipeline, symbols, within=sync_s)
        print(
            f"   {synced} of {symbols} synced in {time.monotonic() - started:.0f} s; "
            f"warming up {warmup:.0f} s",
            flush=True,
        )
        await asyncio.sleep(warmup)
        procs = processes_of(pipeline)
        try:
            step = await _measure(pipeline, procs, mode, symbols, seconds, profile_s)
        except Exception:
            for process in pipeline.processes:
                print(f"--- {process.name} ({'running' if process.running else 'exited'}):")
                print(pipeline.tail(process, 15))
            raise
    if synced < symbols:
        step.keeps_up = False
        step.limits.insert(0, f"crawler synced {synced} of {symbols} in {sync_s:.0f} s")
    return step


async def sync_symbols(pipeline: Pipeline, symbols: int, within: float) -> int:
    """Every service ready, or the deadline: how many symbols the crawler has synced."""
    for name in ("simulator", "storer", "converter"):
        await pipeline.wait_for(pipeline.replicas(name)[0], "/readyz", 60)
    crawler = pipeline.replicas("crawler")[0]
    deadline = time.monotonic() + within
    while True:
        metrics = parse(await pipeline.metrics(crawler))
        synced = int(value(metrics, "fairprice_crawler_symbols_synced"))
        if synced >= symbols or time.monotonic() > deadline:
            return synced
        await asyncio.sleep(1.0)


async def _measure(
    pipeline: Pipeline,
    procs: dict[str, psutil.Process],
    mode: str,
    symbols: int,
    seconds: float,
    profile_s: float,
) -> Step:
    """Samples over ``seconds``, then ``profile_s`` of py-spy on each Python stage."""
    first = await take_sample(pipeline, procs)
    backlogs = [backlogs_of(first)]
    deadline = first.at + seconds
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(5.0, left))
        backlogs.append(backlogs_of(await take_sample(pipeline, procs, ("converter", "storer"))))
    last = await take_sample(pipeline, procs)
    load = os.getloadavg()
    profiles: dict[str, list[tuple[str, float]]] = {}
    if profile_s > 0:
        folder = RESULTS / "profiles"
        folder.mkdir(parents=True, exist_ok=True)
        results = await asyncio.gather(
            *(
                _profile(procs[name].pid, profile_s, folder / f"{mode}-{symbols}-{name}.txt")
                for name in SERVICES
            )
        )
        profiles = dict(zip(SERVICES, results, strict=True))
    return _step(mode, symbols, first, last, backlogs, load, profiles)


def _step(
    mode: str,
    symbols: int,
    first: Sample,
    last: Sample,
    backlogs: list[dict[str, float]],
    load: tuple[float, float, float],
    profiles: dict[str, list[tuple[str, float]]],
) -> Step:
    dt = last.at - first.at

    def rate(service: str, name: str, **labels: str) -> float:
        after = value(last.metrics[service], name, **labels)
        return (after - value(first.metrics[service], name, **labels)) / dt

    asked = symbols * EVENTS_PER_SYMBOL_S
    events = rate("crawler", "fairprice_crawler_events_applied_total")
    e2e = {
        stream: quantiles(
            first.metrics["storer"],
            last.metrics["storer"],
            "fairprice_storer_end_to_end_latency_seconds",
            (0.5, 0.95, 0.99),
            stream=stream,
        )
        for stream in ("books", "prices", "signals", "candles")
    }
    books_published = rate("crawler", "fairprice_crawler_books_published_total")
    inputs = {"converter": books_published} | {
        f"storer.{stream}": rate("storer", "fairprice_storer_messages_total", stream=stream)
        for stream in ("books", "prices", "signals", "candles")
    }
    end = backlogs[-1]
    limits = []
    simulated = rate("simulator", "fairprice_simulator_market_events_total")
    if simulated < FEED_SHARE * asked:
        limits.append(f"simulator makes {simulated:,.0f} of {asked:,} events/s")
    if events < FEED_SHARE * min(asked, simulated):
        limits.append(f"crawler applies {events:,.0f} of {simulated:,.0f} events/s")
    for name, lag in end.items():
        allowed = max(LAG_BOUND_S * inputs[name], 1000)
        if lag > allowed:
            limits.append(f"{name} backlog {lag:,.0f} > {allowed:,.0f}")
    for stream in ("books", "prices"):
        p99 = e2e[stream]["p99"]
        if p99 is not None and p99 > LAG_BOUND_S:
            limits.append(f"{stream} e2e p99 {p99:.2f} s > {LAG_BOUND_S} s")
    stages = {
        name: Stage(
            cores=(last.cpu[name] - first.cpu[name]) / dt,
            cpu_s_per_1k_events=(last.cpu[name] - first.cpu[name]) / max(events * dt, 1) * 1000,
            rss_mb=last.rss[name] / 2**20,
        )
        for name in PROCESSES
    }
    return Step(
        mode=mode,
        symbols=symbols,
        seconds=dt,
        load_average=load,
        asked_events_s=asked,
        simulated_events_s=simulated,
        events_s=events,
        books_published_s=books_published,
        converter_books_s=rate("converter", "fairprice_converter_books_total"),
        prices_s=rate("converter", "fairprice_converter_prices_total"),
        books_stored_s=rate(
            "storer", "fairprice_storer_messages_total", stream="books", outcome="stored"
        ),
        messages_stored_s=rate("storer", "fairprice_storer_messages_total", outcome="stored"),
        points_s=rate("storer", "fairprice_storer_points_written_total"),
        e2e_s=e2e,
        backlog_end=end,
        backlog_max={name: max(b[name] for b in backlogs) for name in end},
        stages=stages,
        machine_busy_cores=(last.busy - first.busy) / dt,
        keeps_up=not limits,
        limits=limits,
        rss_per_symbol_mb={
            "crawler": last.rss["crawler"] / symbols / 2**20,
            "all": sum(last.rss.values()) / symbols / 2**20,
        },
        resyncs={
            dict(labels)["reason"]: count - first.metrics["crawler"].get((name, labels), 0.0)
            for (name, labels), count in last.metrics["crawler"].items()
            if name == "fairprice_crawler_resyncs_total"
        },
        profile=profiles,
    )


@dataclass
class Ceilings:
    jetstream_publish_msg_s: float
    jetstream_consume_msg_s: float
    influx_book_points_s: float
    load_average: tuple[float, float, float]


async def measure_ceilings(messages: int, books: int) -> Ceilings:
    """The parts alone: bench/bus.py's Publisher and PullConsumer, bench/storer.py's ceiling."""
    sample = make_books(books, 20)
    jetstream = await jetstream_ceilings(messages, encode(sample[0]))
    influx = await ceiling(book_bodies(sample, 5000), len(sample))
    return Ceilings(
        jetstream_publish_msg_s=jetstream["publish"][0],
        jetstream_consume_msg_s=jetstream["consume"][0],
        influx_book_points_s=influx.points_per_s,
        load_average=os.getloadavg(),
    )


async def interleaved(
    mode: str,
    plan: Sequence[int],
    peer_plan: Sequence[int],
    args: argparse.Namespace,
    workdir: Path,
) -> tuple[list[Step], list[PeerStep]]:
    """fairprice's steps and the peer's, one of each in turn (so both meet the same machine
    load), each up its own ladder until a count is not kept up with, then ``--bisect``
    halvings of the gap."""
    done: list[Step] = []
    peer_done: list[PeerStep] = []

    async def ours(symbols: int) -> bool:
        step = await run_step(
            mode,
            symbols,
            args.seconds,
            args.warmup,
            args.profile_seconds if args.profile else 0,
            args.sync_seconds,
            Path(tempfile.mkdtemp(prefix=f"{mode}-{symbols}-", dir=workdir)),
            args.converter,
        )
        verdict = "keeps up" if step.keeps_up else "; ".join(step.limits)
        print(f"   {step.events_s:,.0f} events/s, p99 {_p99(step)}: {verdict}", flush=True)
        done.append(step)
        return step.keeps_up

    async def theirs(symbols: int) -> bool:
        step = await run_peer_step(
            mode,
            symbols,
            args.seconds,
            args.warmup,
            args.sync_seconds,
            Path(tempfile.mkdtemp(prefix=f"peer-{mode}-{symbols}-", dir=workdir)),
        )
        verdict = "keeps up" if step.keeps_up else "; ".join(step.limits)
        p99 = step.e2e_s["p99"]
        print(
            f"   peer {step.events_s:,.0f} events/s, p99 "
            f"{'-' if p99 is None else f'{p99 * 1000:,.0f} ms'}, top 20 differs in "
            f"{_share(step.top20.get('differ_share'))} of books: {verdict}",
            flush=True,
        )
        peer_done.append(step)
        return step.keeps_up

    systems = [(Ladder(list(plan), args.bisect, 50), ours)]
    if peer_plan:
        systems.append((Ladder(list(peer_plan), args.bisect, PEER_GRAIN), theirs))
    while True:
        ran = False
        for ladder, run in systems:
            if (symbols := ladder.next()) is not None:
                ladder.record(symbols, await run(symbols))
                ran = True
        if not ran:
            return done, peer_done


def _share(share: float | None) -> str:
    return "-" if share is None else f"{share:.0%}"


def _p99(step: Step) -> str:
    stream = "books" if step.mode == "full" else "prices"
    p99 = step.e2e_s[stream]["p99"]
    return "-" if p99 is None else f"{p99 * 1000:,.0f} ms"


def _cpu_per_1k(step: Step) -> float:
    """CPU seconds per 1,000 events of every process together (simulator included)."""
    return sum(s.cpu_s_per_1k_events for s in step.stages.values())


def _rss_slope(steps: list[Step]) -> float | None:
    """The crawler's resident memory per symbol added, between the fewest and most symbols
    (the process's fixed ~60 MB is not per symbol)."""
    low, high = min(steps, key=lambda s: s.symbols), max(steps, key=lambda s: s.symbols)
    if high.symbols == low.symbols:
        return None
    grown = high.stages["crawler"].rss_mb - low.stages["crawler"].rss_mb
    return grown / (high.symbols - low.symbols)


def _best(steps: list[Step]) -> Step | None:
    kept = [s for s in steps if s.keeps_up]
    return max(kept, key=lambda s: s.symbols) if kept else None


def _print(steps: list[Step], ceilings: Ceilings) -> None:
    print("\nceilings (parts alone, one Python client):")
    table(
        ["part", "per_s"],
        [
            ("JetStream publish (Publisher), top-20 book msgs", ceilings.jetstream_publish_msg_s),
            ("JetStream consume + ack (PullConsumer)", ceilings.jetstream_consume_msg_s),
            ("influxd ingest, pre-built top-20 book points", ceilings.influx_book_points_s),
        ],
    )
    for step in steps:
        print(
            f"\n{step.mode} {step.symbols} symbols, {step.seconds:.0f} s, load average "
            + " ".join(f"{x:.2f}" for x in step.load_average)
            + f": {'keeps up' if step.keeps_up else 'NOT kept up: ' + '; '.join(step.limits)}"
        )
        resyncs = {reason: n for reason, n in step.resyncs.items() if n}
        print(f"  crawler resyncs in the window: {resyncs or 'none'}")
        table(
            ["process", "cores", "cpu_s_per_1k_events", "rss_mb"],
            [
                *(
                    (name, s.cores, s.cpu_s_per_1k_events, s.rss_mb)
                    for name, s in step.stages.items()
                ),
                (
                    "all",
                    sum(s.cores for s in step.stages.values()),
                    _cpu_per_1k(step),
                    sum(s.rss_mb for s in step.stages.values()),
                ),
            ],
        )
        pipeline_cores = sum(s.cores for s in step.stages.values())
        print(
            f"  at {_cpu_per_1k(step):.3f} CPU s per 1,000 events, two idle cores would carry "
            f"{2000 / _cpu_per_1k(step):,.0f} events/s; machine busy {step.machine_busy_cores:.2f}"
            f" of {psutil.cpu_count()} cores, {pipeline_cores:.2f} of them the pipeline's"
        )
        table(
            ["stage", "throughput_per_s", "ceiling_per_s", "share_of_ceiling"],
            [
                (
                    "crawler books published",
                    step.books_published_s,
                    ceilings.jetstream_publish_msg_s,
                    f"{step.books_published_s / ceilings.jetstream_publish_msg_s:.0%}",
                ),
                (
                    "converter books consumed",
                    step.converter_books_s,
                    ceilings.jetstream_consume_msg_s,
                    f"{step.converter_books_s / ceilings.jetstream_consume_msg_s:.0%}",
                ),
                (
                    "storer points written",
                    step.points_s,
                    ceilings.influx_book_points_s,
                    f"{step.points_s / ceilings.influx_book_points_s:.0%}",
                ),
            ],
        )
        busiest = sorted(step.profile, key=lambda name: -step.stages[name].cores)[:2]
        for name in busiest:
            if top := step.profile[name]:
                print(f"  py-spy {name} ({step.stages[name].cores:.2f} cores), top self time:")
                for frame, share in top[:8]:
                    print(f"    {share:6.1%}  {frame}")


def _summary(steps: list[Step]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in dict.fromkeys(s.mode for s in steps):
        best = _best([s for s in steps if s.mode == mode])
        stream = "books" if mode == "full" else "prices"
        out[mode] = {
            "capacity_symbols": best.symbols if best else 0,
            "capacity_events_s": round(best.events_s) if best else 0,
            "first_failed_symbols": min(
                (s.symbols for s in steps if s.mode == mode and not s.keeps_up), default=None
            ),
            "target_events_s": TARGET_EVENTS_S[mode],
            "events_target_met": bool(best and best.events_s >= TARGET_EVENTS_S[mode]),
            "p99_s_at_capacity": best.e2e_s[stream]["p99"] if best else None,
            "p99_target_met": bool(best and (best.e2e_s[stream]["p99"] or 0) <= TARGET_P99_S),
            "crawler_rss_mb_per_symbol": best.rss_per_symbol_mb["crawler"] if best else None,
            "crawler_rss_mb_per_added_symbol": _rss_slope([s for s in steps if s.mode == mode]),
            "cpu_s_per_1k_events_all": _cpu_per_1k(best) if best else None,
            "events_s_two_idle_cores": round(2000 / _cpu_per_1k(best)) if best else None,
        }
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short steps, no bisection")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument(
        "--steps", type=int, nargs="+", help="symbol counts (default 250 500 750 1000 1500 2000)"
    )
    parser.add_argument("--bisect", type=int, default=1)
    parser.add_argument("--modes", nargs="+", default=["interval", "full"])
    parser.add_argument("--sync-seconds", type=float, default=90.0, help="then measure anyway")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--profile-seconds", type=float, default=10.0)
    parser.add_argument("--converter", choices=sorted(CONVERTER_ENV), default="default")
    parser.add_argument(
        "--peer-steps",
        type=int,
        nargs="*",
        help="symbol counts of cryptofeed 2.4.1 (bench/peer.py; default 25 50 100 250 500 1000,"
        " --quick 25 50); the option alone: no peer",
    )
    args = parser.parse_args()
    quick_steps = {"interval": [500], "full": [250]}  # unless --steps
    if args.peer_steps is None:
        args.peer_steps = [25, 50] if args.quick else [25, 50, 100, 250, 500, 1000]
    if args.peer_steps and importlib.util.find_spec("cryptofeed") is None:
        parser.error(
            "the peer needs cryptofeed: run through `make bench`, or `uv run --group peer "
            "python bench/end_to_end.py` (the `peer` dependency group); --peer-steps alone: no peer"
        )
    if args.quick:
        args.seconds, args.warmup, args.bisect = min(args.seconds, 15.0), 5.0, 0
        args.sync_seconds = min(args.sync_seconds, 20.0)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    ceilings = await measure_ceilings(
        20_000 if args.quick else 50_000, 20_000 if args.quick else 60_000
    )
    print(
        f"ceilings: JetStream publish {ceilings.jetstream_publish_msg_s:,.0f}/s, "
        f"consume {ceilings.jetstream_consume_msg_s:,.0f}/s, "
        f"influxd {ceilings.influx_book_points_s:,.0f} book points/s",
        flush=True,
    )
    steps: list[Step] = []
    peer_steps: list[PeerStep] = []
    with tempfile.TemporaryDirectory(prefix="fairprice-bench-") as tmp:
        for mode in args.modes:
            plan = args.steps or (quick_steps[mode] if args.quick else DEFAULT_STEPS)
            ours, theirs = await interleaved(mode, plan, args.peer_steps, args, Path(tmp))
            steps += ours
            peer_steps += theirs
    _print(steps, ceilings)
    print_peer_steps(peer_steps)
    print()
    rows = [
        (
            s.mode,
            s.symbols,
            s.asked_events_s,
            s.events_s,
            s.books_stored_s,
            s.points_s,
            *(
                "-"
                if (v := s.e2e_s["books" if s.mode == "full" else "prices"][q]) is None
                else f"{v * 1000:,.0f}"
                for q in ("p50", "p95", "p99")
            ),
            s.rss_per_symbol_mb["crawler"],
            "yes" if s.keeps_up else "no",
        )
        for s in steps
    ]
    summary = _summary(steps)
    # The pipeline's snapshots are 100 levels (the exchange's weight budget); the crawler's
    # book at depth 1000, measured alone (bench/crawler.py: 200 books, tracemalloc).
    book_kib = memory_per_symbol() / 1024
    print(f"crawler book at depth 1000: {book_kib:,.0f} KiB per symbol (bench/crawler.py)")
    for result in summary.values():
        result["crawler_book_kib_per_symbol_depth_1000"] = round(book_kib)
    comparisons = {}
    if peer_steps:
        for mode, result in summary.items():
            best = _best([s for s in steps if s.mode == mode])
            theirs = [s for s in peer_steps if s.mode == mode]
            comparisons[mode] = compare(mode, result, best.stages if best else None, theirs)
        print_comparison(comparisons)
    report(
        "pipeline",
        [
            "mode",
            "symbols",
            "asked_ev_s",
            "events_s",
            "books_stored_s",
            "points_s",
            "e2e_p50_ms",
            "e2e_p95_ms",
            "e2e_p99_ms",
            "crawler_mb_per_sym",
            "keeps_up",
        ],
        rows,
        quick=args.quick,
        converter=args.converter,
        definition={
            "events_per_symbol_s": EVENTS_PER_SYMBOL_S,
            "keeps_up": (
                f"crawler applies >= {FEED_SHARE:.0%} of asked events; books and prices e2e "
                f"p99 <= {LAG_BOUND_S} s; every consumer backlog <= {LAG_BOUND_S} s of input"
            ),
            "e2e": "exchange event time -> InfluxDB ack (storer histogram, interpolated)",
            "snapshot_limit": SNAPSHOT_LIMIT,
        },
        ceilings=asdict(ceilings),
        summary=summary,
        steps=[asdict(s) for s in steps],
        peer=comparisons,
        peer_steps=[asdict(s) for s in peer_steps],
    )
    for mode, result in summary.items():
        print(f"{mode}: {result}")


if __name__ == "__main__":
    asyncio.run(main())
