"""Cold start: time until every symbol is synced, within Binance's request-weight limit.

For 100, 500, 1,000 and 1,500 symbols: a fresh simulator process (Binance's limits: 6000
request weight a minute per IP, 429 past it, 418 bans; ``exchangeInfo`` states the limit)
and a fresh ``fairprice-crawler`` process with the default settings (``clusters_dev.toml``,
as ``make demo`` runs it), against a real nats-server. The clock starts when the crawler
process is started; the run ends when its ``fairprice_crawler_symbols_synced`` equals the
symbol count. Reported: the seconds to all synced, the weight the crawler spent, the 429s and
418s the simulator answered (must be 0), deeper snapshots taken meanwhile, and the second of
the clock minute the run started at (the exchange's weight window is the clock minute, so a
run that needs more than one minute's weight depends on it; ``--align`` starts every run 2 s
into a minute, the slowest case for a run that needs two windows).

Traffic: every symbol ticks at 100 ms (``@depth@100ms``) and a tick changes its book with
probability ``--event-probability`` (default 0.2: two diff events a second per symbol; on
Binance the busiest books change every 100 ms and most others far less often). At 1.0, 1,500
symbols are 15,000 events a second, which the simulator and the crawler on a shared 2-core
machine cannot both keep up with; the time is then the machine's, not the budget's.

Run: ``uv run python bench/crawler_sync.py`` (``--symbols 100 500``, ``--tick-ms 100``,
``--event-probability 1``, ``--no-align``). Prints a table, writes
bench/results/crawler_sync.json (after every run, so a partial run keeps its rows).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time

import httpx
from _report import report
from prometheus_client.parser import text_string_to_metric_families

from fairprice.common.testing import run_nats

TARGET_S = 60.0

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _sum(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


async def _wait_http(http: httpx.AsyncClient, url: str, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if (await http.get(url)).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer")
        await asyncio.sleep(0.1)


async def _align() -> None:
    """Sleep until 2 s past the next clock minute's start."""
    wait = (62.0 - time.time() % 60) % 60
    print(f"  waiting {wait:.0f} s for the start of a clock minute", flush=True)
    await asyncio.sleep(wait)


async def measure(
    symbols: int, nats_url: str, tick_ms: float, event_probability: float, align: bool
) -> list[object]:
    sim_port, sim_http, crawler_http = _free_port(), _free_port(), _free_port()
    names = [f"SIM{n:04d}USDT" for n in range(symbols)]
    base = dict(os.environ, FAIRPRICE_LOG__LEVEL="WARNING", FAIRPRICE_LOG__FORMAT="json")
    sim_env = dict(
        base,
        FAIRPRICE_SIMULATOR__HOST="127.0.0.1",
        FAIRPRICE_SIMULATOR__PORT=str(sim_port),
        FAIRPRICE_SIMULATOR__HTTP__PORT=str(sim_http),
        FAIRPRICE_SIMULATOR__MARKET__SYMBOLS="[]",
        FAIRPRICE_SIMULATOR__MARKET__GENERATED_SYMBOLS=str(symbols),
        FAIRPRICE_SIMULATOR__MARKET__TICK_MS=str(tick_ms),
        FAIRPRICE_SIMULATOR__MARKET__EVENT_PROBABILITY=str(event_probability),
    )
    crawler_env = dict(
        base,
        FAIRPRICE_NATS__SERVERS=json.dumps([nats_url]),
        FAIRPRICE_CRAWLER__EXCHANGE="sim",
        FAIRPRICE_CRAWLER__REST_URL=f"http://127.0.0.1:{sim_port}",
        FAIRPRICE_CRAWLER__WS_URL=f"ws://127.0.0.1:{sim_port}",
        FAIRPRICE_CRAWLER__SYMBOLS=json.dumps(names),
        FAIRPRICE_CRAWLER__HTTP__HOST="127.0.0.1",
        FAIRPRICE_CRAWLER__HTTP__PORT=str(crawler_http),
        FAIRPRICE_CRAWLER__HANDOFF_S="0",
    )
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fairprice.simulator", env=sim_env, stdout=asyncio.subprocess.DEVNULL
    )
    crawler: asyncio.subprocess.Process | None = None
    try:
        async with httpx.AsyncClient(timeout=5.0) as http:
            await _wait_http(http, f"http://127.0.0.1:{sim_port}/api/v3/ping", 30)
            if align:
                await _align()
            started_at = time.time()
            t0 = time.monotonic()
            crawler = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "fairprice.crawler",
                env=crawler_env,
                stdout=asyncio.subprocess.DEVNULL,
            )
            metrics_url = f"http://127.0.0.1:{crawler_http}/metrics"
            synced, samples = 0.0, Samples()
            while synced < symbols:
                if crawler.returncode is not None:
                    raise RuntimeError(f"crawler exited {crawler.returncode}")
                try:
                    samples = _samples((await http.get(metrics_url)).text)
                    synced = _sum(samples, "fairprice_crawler_symbols_synced")
                except httpx.HTTPError:
                    pass
                if time.monotonic() - t0 > 600:
                    raise TimeoutError(f"{synced:.0f} of {symbols} synced after 600 s")
                await asyncio.sleep(0.2)
            elapsed = time.monotonic() - t0
            sim_samples = _samples((await http.get(f"http://127.0.0.1:{sim_http}/metrics")).text)
    finally:
        for proc in (crawler, sim):
            if proc is not None and proc.returncode is None:
                proc.terminate()
                await proc.wait()
    rest = "fairprice_simulator_rest_requests_total"
    return [
        symbols,
        round(elapsed, 1),
        int(_sum(samples, "fairprice_crawler_snapshot_weight_total")),
        int(_sum(samples, "fairprice_crawler_weight_budget")),
        int(_sum(sim_samples, "fairprice_simulator_weight_used_total")),
        int(_sum(sim_samples, rest, status="429")),
        int(_sum(sim_samples, rest, status="418")),
        int(_sum(samples, "fairprice_crawler_window_snapshots_total")),
        int(started_at % 60),
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, nargs="+", default=[100, 500, 1000, 1500])
    parser.add_argument("--tick-ms", type=float, default=100.0)
    parser.add_argument("--event-probability", type=float, default=0.2)
    parser.add_argument("--no-align", dest="align", action="store_false")
    args = parser.parse_args()
    columns = [
        "symbols",
        "seconds to all synced",
        "weight spent",
        "weight budget",
        "weight seen by sim",
        "429s",
        "418s",
        "deeper snapshots",
        "start second",
    ]
    rows: list[list[object]] = []
    async with run_nats() as nats:
        for n in args.symbols:
            print(f"{n} symbols ...", flush=True)
            rows.append(
                await measure(n, nats.url, args.tick_ms, args.event_probability, args.align)
            )
            load = os.getloadavg()
            report(
                "crawler_sync",
                columns,
                rows,
                tick_ms=args.tick_ms,
                event_probability=args.event_probability,
                aligned=args.align,
                target_s_for_1000=TARGET_S,
                load_average=[round(x, 2) for x in load],
                cpus=os.cpu_count(),
            )
            print(
                f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores"
            )
    if any(row[5] or row[6] for row in rows):
        raise SystemExit("the exchange answered 429/418: the budget did not hold")


if __name__ == "__main__":
    asyncio.run(main())
