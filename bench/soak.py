"""Soak: the whole pipeline for many minutes at a steady load below its capacity.

    uv run python bench/soak.py [--minutes 20] [--rate EVENTS_S | --share 0.7] [--mode interval]

The load is ``--rate`` events/s, or ``--share`` of the highest kept-up rate of ``--mode`` in
the last capacity run (bench/results/pipeline.json, which ``make bench`` writes first), in
symbols of 10 events/s. One ``Pipeline`` (as bench/end_to_end.py's steps), every symbol synced,
then every ``--every`` seconds: each process's memory, the end-to-end p99 of that
interval (books and prices), the consumers' backlogs and the JetStream streams' sizes.

The streams keep ``--retention`` seconds (default an eighth of the soak), so that they, and
the servers' memory with them, reach their steady size within the quarter that is warm-up:
with the services' defaults (an hour of books) nats-server would still be filling them at the
end. influxd keeps every point; its memory is a saw (see below).

It passes when no service logged an error (a JSON line at level error or critical, or a
traceback), no process's anonymous resident memory (``RssAnon``: its heap, where a leak shows;
not the data files influxd and nats-server map, which are page cache and grow with the data
kept) grew faster than ``GROWTH_BOUND_MB_PER_MIN``, and every interval's p99 stayed <=
``LAG_BOUND_S``. Growth is that of the floor: the least memory of the last quarter less the
least of the second quarter, over the half soak between them (the first quarter is warm-up:
caches, buffers, the streams filling). A floor, not a fit: influxd's memory is a saw (its
cache fills, then is written to disk and emptied), and a line through a rising edge is no
leak; a leak raises the floor. Prints a line per sample, then per process its RSS slope over
the second half (least squares: what an operator would plot) and the floor growth, and the
verdict; writes bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _metrics import quantiles
from _report import RESULTS, report
from _step import EVENTS_PER_SYMBOL_S, LAG_BOUND_S
from end_to_end import PROCESSES, backlogs_of, processes_of, step_env, sync_symbols, take_sample

from fairprice.cli.processes import Pipeline
from fairprice.common.bus import connect_bus
from fairprice.common.settings import StreamsSettings
from fairprice.common.subjects import Stream

GROWTH_BOUND_MB_PER_MIN = 0.5
"""30 MB an hour: more than that after warm-up, kept up for hours, is a leak."""
E2E = "fairprice_storer_end_to_end_latency_seconds"


@dataclass
class Point:
    """One sample of the soak."""

    minute: float
    rss_mb: dict[str, float]
    anon_mb: dict[str, float]
    """``RssAnon``: resident memory that no file backs."""
    p99_s: dict[str, float | None]
    """books and prices, over the interval that ends here."""
    events_s: float
    backlog: dict[str, float]
    streams: dict[str, dict[str, int]]
    """Per stream: messages and bytes held."""


def _slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (x, y); None for fewer than 3 points."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else None


def _floor_growth(points: list[tuple[float, float]], minutes: float) -> float | None:
    """MB per minute between the floors of the second and the last quarter of (minute, MB);
    None when either quarter has no point."""
    second = [mb for m, mb in points if minutes / 4 <= m < minutes / 2]
    last = [mb for m, mb in points if m >= minutes * 3 / 4]
    if not second or not last:
        return None
    return (min(last) - min(second)) / (minutes / 2)


def _anon_mb(pid: int) -> float:
    """``RssAnon`` of ``pid`` (Linux), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _errors(pipeline: Pipeline) -> dict[str, list[str]]:
    """Error lines in each service's log (structured JSON: level error/critical; tracebacks)."""
    found: dict[str, list[str]] = {}
    for process in pipeline.processes:
        try:
            lines = process.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            continue
        bad = []
        for line in lines:
            if line.startswith("Traceback"):
                bad.append(line)
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("level") in ("error", "critical"):
                bad.append(line)
        if bad:
            found[f"{process.name}-{process.index}"] = bad
    return found


def _capacity_rate(mode: str) -> float:
    path = RESULTS / "pipeline.json"
    try:
        summary = json.loads(path.read_text())["summary"][mode]
    except (FileNotFoundError, KeyError) as exc:
        raise SystemExit(
            f"no capacity of {mode} mode in {path}: run bench/end_to_end.py first, or give --rate"
        ) from exc
    return float(summary["capacity_events_s"])


def _env(mode: str, symbols: int, retention_s: float) -> dict[str, dict[str, str]]:
    """A capacity step's settings, with streams that keep only ``retention_s`` of data."""
    env = step_env(mode, symbols)
    defaults = StreamsSettings()
    env["*"] = {}
    for stream in Stream:
        key = f"FAIRPRICE_NATS__STREAMS__{stream.name}"
        env["*"][f"{key}__MAX_AGE_S"] = str(retention_s)
        # A limit is set whole: its size bound stays the services' default.
        env["*"][f"{key}__MAX_BYTES"] = str(getattr(defaults, stream.name.lower()).max_bytes)
    return env


async def soak(
    mode: str, symbols: int, minutes: float, every: float, retention_s: float, workdir: Path
) -> dict[str, Any]:
    names = [f"SIM{n:04d}USDT" for n in range(symbols)]
    async with Pipeline(workdir, symbols=names, env=_env(mode, symbols, retention_s)) as pipeline:
        synced = await sync_symbols(pipeline, symbols, within=120)
        print(f"   {synced} of {symbols} symbols synced; soaking {minutes:g} min", flush=True)
        procs = processes_of(pipeline)
        settings = pipeline.nats_settings()
        points: list[Point] = []
        async with connect_bus(settings, name="bench-soak") as bus:
            previous = await take_sample(pipeline, procs)
            start = previous.at
            while previous.at - start < minutes * 60:
                await asyncio.sleep(every)
                current = await take_sample(pipeline, procs)
                streams = {}
                for stream in Stream:
                    state = (await bus.jsm.stream_info(stream.value)).state
                    streams[stream.value] = {"messages": state.messages, "bytes": state.bytes}
                dt = current.at - previous.at
                applied = "fairprice_crawler_events_applied_total"
                events = sum(
                    v for (n, _), v in current.metrics["crawler"].items() if n == applied
                ) - sum(v for (n, _), v in previous.metrics["crawler"].items() if n == applied)
                point = Point(
                    minute=(current.at - start) / 60,
                    rss_mb={name: current.rss[name] / 2**20 for name in PROCESSES},
                    anon_mb={name: _anon_mb(procs[name].pid) for name in PROCESSES},
                    p99_s={
                        stream: quantiles(
                            previous.metrics["storer"],
                            current.metrics["storer"],
                            E2E,
                            (0.99,),
                            stream=stream,
                        )["p99"]
                        for stream in ("books", "prices")
                    },
                    events_s=events / dt,
                    backlog=backlogs_of(current),
                    streams=streams,
                )
                points.append(point)
                _print_point(point)
                previous = current
        errors = _errors(pipeline)
    return _verdict(mode, symbols, minutes, points, errors)


def _print_point(p: Point) -> None:
    rss = " ".join(f"{name} {mb:,.0f}/{p.anon_mb[name]:,.0f}" for name, mb in p.rss_mb.items())
    p99 = " ".join(f"{s} {'-' if v is None else f'{v * 1000:,.0f} ms'}" for s, v in p.p99_s.items())
    held = " ".join(f"{s} {v['messages']:,}" for s, v in p.streams.items())
    print(
        f"  {p.minute:5.1f} min  {p.events_s:,.0f} ev/s  p99 {p99}  RSS/anon MB {rss}  "
        f"backlog {max(p.backlog.values(), default=0):,.0f}  streams {held}",
        flush=True,
    )


def _verdict(
    mode: str, symbols: int, minutes: float, points: list[Point], errors: dict[str, list[str]]
) -> dict[str, Any]:
    half = [p for p in points if p.minute >= minutes / 2]
    slopes = {name: _slope([(p.minute, p.rss_mb[name]) for p in half]) for name in PROCESSES}
    growth = {
        name: _floor_growth([(p.minute, p.anon_mb[name]) for p in points], minutes)
        for name in PROCESSES
    }
    growing = {
        name: g for name, g in growth.items() if g is not None and g > GROWTH_BOUND_MB_PER_MIN
    }
    slow = [
        (round(p.minute, 1), stream, v)
        for p in points
        for stream, v in p.p99_s.items()
        if v is not None and v > LAG_BOUND_S
    ]
    problems = [f"{name} anonymous memory grows {s:.2f} MB/min" for name, s in growing.items()]
    problems += [
        f"{name}: {len(lines)} errors logged, first: {lines[0]}" for name, lines in errors.items()
    ]
    problems += [f"p99 {v:.2f} s > {LAG_BOUND_S} s at {m} min ({s})" for m, s, v in slow]
    return {
        "mode": mode,
        "symbols": symbols,
        "events_s_asked": symbols * EVENTS_PER_SYMBOL_S,
        "minutes": minutes,
        "load_average": os.getloadavg(),
        "rss_slope_mb_per_min_second_half": slopes,
        "anon_floor_growth_mb_per_min": growth,
        "growth_bound_mb_per_min": GROWTH_BOUND_MB_PER_MIN,
        "errors": errors,
        "passed": not problems,
        "problems": problems,
        "points": [asdict(p) for p in points],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--rate", type=float, help="events/s (default: --share of capacity)")
    parser.add_argument("--share", type=float, default=0.7)
    parser.add_argument("--mode", choices=["interval", "full"], default="interval")
    parser.add_argument("--every", type=float, help="seconds between samples (default: ~40)")
    parser.add_argument(
        "--retention", type=float, help="seconds the streams keep (default: an eighth of it)"
    )
    args = parser.parse_args()
    retention_s = args.retention or max(30.0, args.minutes * 60 / 8)
    rate = args.rate if args.rate else args.share * _capacity_rate(args.mode)
    symbols = max(1, round(rate / EVENTS_PER_SYMBOL_S))
    every = args.every or max(5.0, args.minutes * 60 / 40)
    print(
        f"soak: {args.mode} mode, {symbols} symbols ({symbols * EVENTS_PER_SYMBOL_S:,} events/s), "
        f"{args.minutes:g} min, a sample every {every:.0f} s, streams keep {retention_s:.0f} s; "
        "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="fairprice-soak-") as tmp:
        result = await soak(args.mode, symbols, args.minutes, every, retention_s, Path(tmp))
    rows = (
        [
            (
                name,
                "-"
                if (slope := result["rss_slope_mb_per_min_second_half"][name]) is None
                else slope,
                "-" if (floor := result["anon_floor_growth_mb_per_min"][name]) is None else floor,
                result["points"][-1]["anon_mb"][name],
                result["points"][-1]["rss_mb"][name],
            )
            for name in PROCESSES
        ]
        if result["points"]
        else []
    )
    print()
    columns = [
        "process",
        "rss_mb_per_min_second_half",
        "anon_floor_mb_per_min",
        "anon_mb_end",
        "rss_mb_end",
    ]
    report("soak", columns, rows, **result)
    print("soak " + ("PASSED" if result["passed"] else "FAILED: " + "; ".join(result["problems"])))
    if not result["passed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
