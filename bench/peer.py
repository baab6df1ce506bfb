"""The peer's steps of bench/end_to_end.py: cryptofeed 2.4.1 on the same simulator, same load.

A peer step is a ``Pipeline`` with only its servers and simulator (nats-server idles; no
fairprice service runs), the database ``peer`` in influxd, the ``/api/v2/write`` pass-through
(bench/influx_v2.py) and the peer itself (bench/peer_feed.py), both through
``Pipeline.spawn``, so they die with the bench like the rest. Each symbol streams
``@depth@100ms`` (10 events/s), as in fairprice's steps.

Two ways to store, each set against the fairprice mode that stores the same data:
- ``books`` (against ``full``): ``BookInflux(snapshots_only=True)``, every book's top 20;
- ``price`` (against ``interval``): the mid of every book, through cryptofeed's writer.

Keeping up, over the measured window (``_step``'s bounds, as for fairprice):
- the peer's book callback sees >= 95% of the events the simulator made;
- influxd acknowledges >= 95% of the points the peer wrote, with no failed write;
- end-to-end p99 (exchange event time -> influxd's acknowledgement, seen by the pass-through)
  <= ``LAG_BOUND_S``;
- at the end, at most ``LAG_BOUND_S`` seconds of books are not yet written: books seen by the
  peer minus points posted to the pass-through (one point per book in both ways of storing;
  the backend's queue alone would miss the batch its writer took out and posts one by one).

After the window the peer takes the next book of each symbol and compares its top 20 with the
simulator's true book at that book's update id: the share that differs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from _metrics import Metrics, parse, quantiles, value
from _report import table
from _step import EVENTS_PER_SYMBOL_S, FEED_SHARE, LAG_BOUND_S, SIMULATOR_ENV, Stage, busy

from fairprice.cli.processes import Pipeline, ServiceProcess, free_port
from fairprice.common.local_servers import InfluxServer

__all__ = [
    "PEER_GRAIN",
    "PEER_STORE",
    "PeerStep",
    "compare",
    "print_comparison",
    "print_peer_steps",
    "run_peer_step",
]

BENCH = Path(__file__).resolve().parent
PEER_STORE = {"full": "books", "interval": "price"}
"""The fairprice books mode -> the peer's way of storing the same data."""
PEER_GRAIN = 5
"""Bisected peer counts are multiples of this (50 events/s)."""
PEER_PROCESSES = ("peer", "influx-v2", "influxd", "simulator")
E2E = "peer_influx_end_to_end_latency_seconds"
DATABASE = "peer"


@dataclass
class PeerStep:
    mode: str
    """The fairprice mode this step stands beside."""
    store: str
    symbols: int
    seconds: float
    load_average: tuple[float, float, float]
    asked_events_s: float
    simulated_events_s: float
    events_s: float
    """Books the peer's callback saw a second (one per diff event, as fairprice's events)."""
    points_s: float
    """Points influxd acknowledged a second."""
    failed_writes: float
    e2e_s: dict[str, float | None]
    unwritten_end: int
    """Books the peer had seen and not yet posted, at the end of the window."""
    unwritten_max: int
    stages: dict[str, Stage]
    machine_busy_cores: float
    keeps_up: bool
    limits: list[str]
    errors_logged: int
    top20: dict[str, Any] = field(default_factory=dict)
    """The true-book check: books checked, how many differ, ``differ_share``."""


@dataclass
class _Sample:
    at: float
    status: dict[str, Any]
    proxy: Metrics
    simulator: Metrics
    cpu: dict[str, float]
    rss: dict[str, int]
    busy: float


async def run_peer_step(
    mode: str, symbols: int, seconds: float, warmup: float, sync_s: float, workdir: Path
) -> PeerStep:
    names = [f"SIM{n:04d}USDT" for n in range(symbols)]
    store = PEER_STORE[mode]
    print(
        f"-- peer ({store}, beside {mode}): {symbols} symbols "
        f"({symbols * EVENTS_PER_SYMBOL_S:,} events/s asked) ...",
        flush=True,
    )
    replicas = {"storer": 0, "converter": 0, "crawler": 0}
    env = {"simulator": SIMULATOR_ENV}
    async with Pipeline(workdir, symbols=names, env=env, replicas=replicas) as pipeline:
        simulator = pipeline.replicas("simulator")[0]
        await pipeline.wait_for(simulator, "/readyz", 60)
        async with httpx.AsyncClient(timeout=10) as http:
            created = await http.post(
                # The peer's own database and writes: not a fairprice service, the admin.
                pipeline.influx_url(InfluxServer.ADMIN) + "/query",
                params={"q": f"CREATE DATABASE {DATABASE}"},
            )
            created.raise_for_status()
        proxy = await pipeline.spawn(
            "influx-v2",
            [
                sys.executable,
                str(BENCH / "influx_v2.py"),
                "--port",
                str(port := free_port()),
                "--influx",
                pipeline.influx_url(InfluxServer.ADMIN),
            ],
            port=port,
            grace_s=10,
        )
        await pipeline.wait_for(proxy, "/metrics", 30)
        status, check = workdir / "peer-status.json", workdir / "peer-check.json"
        feed_log = workdir / "logs" / "cryptofeed.log"
        peer = await pipeline.spawn(
            "peer",
            [
                sys.executable,
                str(BENCH / "peer_feed.py"),
                "--rest", pipeline.simulator_url,
                "--ws", pipeline.simulator_url.replace("http://", "ws://"),
                "--influx", proxy.url,
                "--bucket", DATABASE,
                "--store", store,
                "--symbols", ",".join(names),
                "--status", str(status),
                "--check", str(check),
                "--log", str(feed_log),
            ],
            grace_s=10,
        )  # fmt: skip
        started = time.monotonic()
        synced = await _sync(pipeline, peer, status, symbols, sync_s)
        print(
            f"   {synced} of {symbols} symbols streaming in {time.monotonic() - started:.0f} s; "
            f"warming up {warmup:.0f} s",
            flush=True,
        )
        await asyncio.sleep(warmup)
        procs = _processes(pipeline, peer, proxy)
        try:
            step = await _measure(pipeline, procs, proxy, status, mode, store, symbols, seconds)
            step.top20 = await _check(peer, check)
        except Exception:
            for process in (peer, proxy):
                print(f"--- {process.name} ({'running' if process.running else 'exited'}):")
                print(pipeline.tail(process, 15))
            raise
        step.errors_logged = _errors(feed_log, pipeline.tail(proxy, 10_000))
    if synced < symbols:
        step.limits.insert(0, f"peer streamed {synced} of {symbols} symbols in {sync_s:.0f} s")
    if step.errors_logged:
        step.limits.append(f"{step.errors_logged} errors logged")
    step.keeps_up = not step.limits
    return step


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _read_status(status: Path) -> dict[str, Any]:
    return _read_json(status) or {"books": 0, "symbols": 0, "at": time.time()}


async def _sync(
    pipeline: Pipeline, peer: ServiceProcess, status: Path, symbols: int, within: float
) -> int:
    """Until the peer has had a book of every symbol (its snapshots are taken one at a time,
    inside its message handler), or the deadline: how many it has."""
    deadline = time.monotonic() + within
    while True:
        if not peer.running:
            raise RuntimeError(f"the peer exited:\n{pipeline.tail(peer)}")
        seen = int(_read_status(status)["symbols"])
        if seen >= symbols or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(1.0)


def _processes(
    pipeline: Pipeline, peer: ServiceProcess, proxy: ServiceProcess
) -> dict[str, psutil.Process]:
    simulator = pipeline.replicas("simulator")[0]
    pids = {
        "peer": peer.proc.pid if peer.proc else None,
        "influx-v2": proxy.proc.pid if proxy.proc else None,
        "simulator": simulator.proc.pid if simulator.proc else None,
        "influxd": pipeline.influxd.process.pid if pipeline.influxd.process else None,
    }
    return {name: psutil.Process(pid) for name, pid in pids.items() if pid is not None}


async def _sample(
    pipeline: Pipeline, procs: dict[str, psutil.Process], proxy: ServiceProcess, status: Path
) -> _Sample:
    return _Sample(
        at=time.monotonic(),
        status=_read_status(status),
        proxy=parse(await pipeline.metrics(proxy)),
        simulator=parse(await pipeline.metrics(pipeline.replicas("simulator")[0])),
        cpu={name: sum(p.cpu_times()[:2]) for name, p in procs.items()},
        rss={name: p.memory_info().rss for name, p in procs.items()},
        busy=busy(),
    )


async def _measure(
    pipeline: Pipeline,
    procs: dict[str, psutil.Process],
    proxy: ServiceProcess,
    status: Path,
    mode: str,
    store: str,
    symbols: int,
    seconds: float,
) -> PeerStep:
    first = await _sample(pipeline, procs, proxy, status)
    unwritten = [_unwritten(first)]
    deadline = first.at + seconds
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(5.0, left))
        unwritten.append(_unwritten(await _sample(pipeline, procs, proxy, status)))
    last = await _sample(pipeline, procs, proxy, status)
    unwritten.append(_unwritten(last))
    dt = last.at - first.at
    asked = symbols * EVENTS_PER_SYMBOL_S
    simulated = (
        value(last.simulator, "fairprice_simulator_market_events_total")
        - value(first.simulator, "fairprice_simulator_market_events_total")
    ) / dt
    # The status file is rewritten every second: its own clock, not the samples'.
    books = last.status["books"] - first.status["books"]
    events = books / max(last.status["at"] - first.status["at"], 1e-9)

    def counted(name: str, **labels: str) -> float:
        return value(last.proxy, name, **labels) - value(first.proxy, name, **labels)

    acked = sum(
        counted("peer_influx_points_total", status=s)
        for s in {dict(ls)["status"] for (n, ls) in last.proxy if n == "peer_influx_points_total"}
        if s.startswith("2")
    )
    posted = counted("peer_influx_points_total")
    failed = counted("peer_influx_requests_total") - sum(
        counted("peer_influx_requests_total", status=s) for s in ("200", "204")
    )
    e2e = quantiles(first.proxy, last.proxy, E2E, (0.5, 0.95, 0.99))
    limits = []
    if simulated < FEED_SHARE * asked:
        limits.append(f"simulator makes {simulated:,.0f} of {asked:,} events/s")
    if events < FEED_SHARE * min(asked, simulated):
        limits.append(f"peer sees {events:,.0f} of {simulated:,.0f} events/s")
    if acked < FEED_SHARE * events * dt:
        limits.append(f"influxd acknowledged {acked / dt:,.0f} of {events:,.0f} points/s")
    if failed:
        limits.append(f"{failed:,.0f} writes failed ({posted - acked:,.0f} points)")
    allowed = max(LAG_BOUND_S * events, 1000)
    if unwritten[-1] > allowed:
        limits.append(f"peer has {unwritten[-1]:,} books not written > {allowed:,.0f}")
    if (p99 := e2e["p99"]) is not None and p99 > LAG_BOUND_S:
        limits.append(f"e2e p99 {p99:.2f} s > {LAG_BOUND_S} s")
    stages = {
        name: Stage(
            cores=(last.cpu[name] - first.cpu[name]) / dt,
            cpu_s_per_1k_events=(last.cpu[name] - first.cpu[name]) / max(events * dt, 1) * 1000,
            rss_mb=last.rss[name] / 2**20,
        )
        for name in PEER_PROCESSES
        if name in procs
    }
    return PeerStep(
        mode=mode,
        store=store,
        symbols=symbols,
        seconds=dt,
        load_average=os.getloadavg(),
        asked_events_s=asked,
        simulated_events_s=simulated,
        events_s=events,
        points_s=acked / dt,
        failed_writes=failed,
        e2e_s=e2e,
        unwritten_end=unwritten[-1],
        unwritten_max=max(unwritten),
        stages=stages,
        machine_busy_cores=(last.busy - first.busy) / dt,
        keeps_up=not limits,
        limits=limits,
        errors_logged=0,
    )


def _unwritten(sample: _Sample) -> int:
    return max(0, int(sample.status["books"] - value(sample.proxy, "peer_influx_points_total")))


async def _check(peer: ServiceProcess, check: Path, within: float = 30.0) -> dict[str, Any]:
    """SIGUSR1: the peer compares the next book of each symbol with the true book."""
    assert peer.proc is not None
    peer.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + within
    while (result := _read_json(check)) is None:
        if time.monotonic() > deadline or not peer.running:
            return {"checked": 0, "differ": 0, "differ_share": None, "note": "no answer"}
        await asyncio.sleep(0.5)
    result["differ_share"] = result["differ"] / result["checked"] if result["checked"] else None
    return result


def _errors(feed_log: Path, proxy_log: str) -> int:
    """ERROR lines in cryptofeed's log and tracebacks in the pass-through's."""
    try:
        feed = feed_log.read_text(errors="replace")
    except FileNotFoundError:
        feed = ""
    return sum(" : ERROR : " in line for line in feed.splitlines()) + proxy_log.count("Traceback")


TARGET_RATIO = 5.0
"""fairprice's highest kept-up events/s over the peer's, storing the same data (issue 14)."""


def _best(steps: list[PeerStep]) -> PeerStep | None:
    kept = [s for s in steps if s.keeps_up]
    return max(kept, key=lambda s: s.symbols) if kept else None


def _servers_cpu(stages: dict[str, Stage]) -> float:
    """CPU per 1,000 events of the peer's own processes: the pass-through is not cryptofeed's
    (influxd 1.8+ serves /api/v2 itself), so it is reported apart."""
    return sum(s.cpu_s_per_1k_events for name, s in stages.items() if name != "influx-v2")


def print_peer_steps(steps: list[PeerStep]) -> None:
    for step in steps:
        print(
            f"\npeer {step.store} (beside {step.mode}) {step.symbols} symbols, "
            f"{step.seconds:.0f} s, load average "
            + " ".join(f"{x:.2f}" for x in step.load_average)
            + f": {'keeps up' if step.keeps_up else 'NOT kept up: ' + '; '.join(step.limits)}"
        )
        print(
            f"  {step.events_s:,.0f} events/s seen, {step.points_s:,.0f} points/s acknowledged, "
            f"books not yet written max {step.unwritten_max:,}, end {step.unwritten_end:,}; "
            "top 20 differs "
            f"from the true book in {step.top20.get('differ', 0)} of "
            f"{step.top20.get('checked', 0)} books checked"
        )
        table(
            ["process", "cores", "cpu_s_per_1k_events", "rss_mb"],
            [(name, s.cores, s.cpu_s_per_1k_events, s.rss_mb) for name, s in step.stages.items()],
        )


def compare(
    mode: str, ours: dict[str, Any], our_stages: dict[str, Stage] | None, theirs: list[PeerStep]
) -> dict[str, Any]:
    """One mode's side by side: highest kept-up events/s, CPU per 1,000 events per process,
    the ratio, and the share of the peer's books whose top 20 is not the true book."""
    best = _best(theirs)
    ratio = ours["capacity_events_s"] / best.events_s if best and best.events_s else None
    checked = [s.top20 for s in theirs if s.top20.get("checked")]
    return {
        "peer": "cryptofeed 2.4.1",
        "peer_store": PEER_STORE[mode],
        "peer_capacity_symbols": best.symbols if best else 0,
        "peer_capacity_events_s": round(best.events_s) if best else 0,
        "peer_first_failed_symbols": min(
            (s.symbols for s in theirs if not s.keeps_up), default=None
        ),
        "peer_cpu_s_per_1k_events": (
            {name: round(s.cpu_s_per_1k_events, 4) for name, s in best.stages.items()}
            if best
            else None
        ),
        "peer_cpu_s_per_1k_events_all_but_pass_through": (
            round(_servers_cpu(best.stages), 4) if best else None
        ),
        "fairprice_capacity_events_s": ours["capacity_events_s"],
        "fairprice_cpu_s_per_1k_events": (
            {name: round(s.cpu_s_per_1k_events, 4) for name, s in our_stages.items()}
            if our_stages
            else None
        ),
        "fairprice_cpu_s_per_1k_events_all": ours["cpu_s_per_1k_events_all"],
        "events_ratio": round(ratio, 2) if ratio else None,
        # A system that kept up with every count it was given can do more: fairprice's more
        # makes the ratio a lower bound; the peer's more leaves it undecided.
        "ratio_is_lower_bound": ours["first_failed_symbols"] is None,
        "ratio_is_undecided": bool(theirs) and all(s.keeps_up for s in theirs),
        "target_ratio": TARGET_RATIO,
        "ratio_target_met": bool(ratio and ratio >= TARGET_RATIO),
        "peer_top20_books_checked": sum(c["checked"] for c in checked),
        "peer_top20_differ_share": (
            sum(c["differ"] for c in checked) / sum(c["checked"] for c in checked)
            if checked
            else None
        ),
    }


def print_comparison(comparisons: dict[str, dict[str, Any]]) -> None:
    print("\nfairprice against the peer (highest kept-up events/s, same simulator, same data):")
    rows = []
    for mode, c in comparisons.items():
        share = c["peer_top20_differ_share"]
        rows.append(
            (
                mode,
                c["peer_store"],
                c["fairprice_capacity_events_s"],
                c["peer_capacity_events_s"],
                "-"
                if c["events_ratio"] is None
                else (">= " if c["ratio_is_lower_bound"] else "")
                + f"{c['events_ratio']:.1f}x"
                + (" (peer never failed)" if c["ratio_is_undecided"] else ""),
                c["fairprice_cpu_s_per_1k_events_all"] or "-",
                c["peer_cpu_s_per_1k_events_all_but_pass_through"] or "-",
                (c["peer_cpu_s_per_1k_events"] or {}).get("influx-v2", "-"),
                "-" if share is None else f"{share:.0%}",
            )
        )
    table(
        [
            "mode",
            "peer_stores",
            "fairprice_ev_s",
            "peer_ev_s",
            "ratio",
            "fairprice_cpu_1k",
            "peer_cpu_1k",
            "pass_through_cpu_1k",
            "peer_top20_wrong",
        ],
        rows,
    )
