"""Inputs for the converter's tests: books rebuilt from a real Binance recording.

The NKNUSDT session (2021-10-11) is replayed by Binance's documented rules for a local order
book: take the REST snapshot, drop the buffered events with ``u <= lastUpdateId``, the first
applied one must straddle ``lastUpdateId + 1``, each later one must start at the previous
``u + 1``, and a quantity of zero removes the level. The crawler owns the real implementation;
this is the smallest faithful one, so the converter's tests do not wait for it.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from decimal import Decimal

import pytest

from fairprice.common.messages import Book
from fairprice.common.testing import recordings_dir

RECORDING = recordings_dir() / "cryptofeed-binance-2021-10-11"
TOP_N = 20


def _top(side: dict[Decimal, str], raw: dict[Decimal, str], reverse: bool) -> list[tuple[str, str]]:
    prices = sorted(side, reverse=reverse)[:TOP_N]
    return [(raw[p], side[p]) for p in prices]


def _replay_nknusdt() -> list[Book]:
    lines = (RECORDING / "BINANCE.http.0.0").read_text().splitlines()
    snapshot_line = next(line for line in lines if "symbol=NKNUSDT" in line)
    snapshot = json.loads(snapshot_line.split(": ", 1)[1])
    last_id = snapshot["lastUpdateId"]
    sides: dict[str, dict[Decimal, str]] = {"b": {}, "a": {}}
    raw: dict[Decimal, str] = {}
    for key, levels in (("b", snapshot["bids"]), ("a", snapshot["asks"])):
        for price, qty in levels:
            raw[Decimal(price)] = price
            sides[key][Decimal(price)] = qty
    books: list[Book] = []
    previous: int | None = None
    with (RECORDING / "BINANCE.ws.1.0").open() as frames:
        next(frames)  # the URL line
        for line in frames:
            if '"nknusdt@depth@100ms"' not in line:
                continue
            received, frame = line.split(": ", 1)
            event = json.loads(frame)["data"]
            first, final = event["U"], event["u"]
            if final <= last_id:
                continue  # already in the snapshot
            if previous is None:
                assert first <= last_id + 1 <= final
            else:
                assert first == previous + 1, "the recording has no gaps"
            previous = final
            for key in ("b", "a"):
                for price, qty in event[key]:
                    p = Decimal(price)
                    raw[p] = price
                    if Decimal(qty) == 0:
                        sides[key].pop(p, None)
                    else:
                        sides[key][p] = qty
            books.append(
                Book(
                    exchange="binance",
                    symbol="NKNUSDT",
                    update_id=final,
                    first_update_id=first,
                    event_time_ms=event["E"],
                    receive_time_ms=int(float(received) * 1000),
                    bids=_top(sides["b"], raw, reverse=True),
                    asks=_top(sides["a"], raw, reverse=False),
                )
            )
    return books


@pytest.fixture(scope="session")
def nknusdt_books() -> list[Book]:
    """The 149 top-20 books of the recorded NKNUSDT session, in order."""
    return _replay_nknusdt()


def _synthetic_books(
    symbol: str,
    count: int,
    *,
    seed: int = 1,
    start_ms: int = 1_700_000_000_000,
    gaps_ms: tuple[int, int] | None = None,
) -> list[Book]:
    """A deterministic random walk of ``count`` top-5 books, 20-800 ms apart with a few
    pauses of 30-90 s, trends that make the SMAs cross, and now and then a crossed or
    one-sided book: everything the pipeline must handle. ``gaps_ms=(low, high)``: gaps
    log-uniform in that range instead (dense stretches and long silences: candles of many
    minutes from few books)."""
    rng = random.Random(f"{symbol}:{seed}")
    books: list[Book] = []
    mid = 100.0 + rng.random() * 10
    drift = 0.0
    t = start_ms
    for i in range(count):
        if rng.random() < 0.01:
            drift = rng.choice((-1, 1)) * rng.uniform(0.002, 0.02)
        mid = max(1.0, mid + drift + rng.gauss(0, 0.03))
        if gaps_ms is not None:
            t += round(math.exp(rng.uniform(math.log(gaps_ms[0]), math.log(gaps_ms[1]))))
        else:
            t += rng.randint(20, 800) if rng.random() > 0.004 else rng.randint(30_000, 90_000)
        tick = 0.01
        bid = round(mid - tick * rng.randint(1, 3), 2)
        ask = round(mid + tick * rng.randint(1, 3), 2)
        bids = [(f"{bid - k * tick:.2f}", f"{rng.uniform(0.1, 40):.4f}") for k in range(5)]
        asks = [(f"{ask + k * tick:.2f}", f"{rng.uniform(0.1, 40):.4f}") for k in range(5)]
        roll = rng.random()
        if roll < 0.01:
            bids, asks = asks, bids  # crossed
        elif roll < 0.015:
            asks = []
        books.append(
            Book(
                exchange="sim",
                symbol=symbol,
                update_id=1000 + i * 3,
                first_update_id=998 + i * 3,
                event_time_ms=t,
                receive_time_ms=t + 5,
                bids=bids,
                asks=asks,
            )
        )
    return books


@pytest.fixture(scope="session")
def make_books() -> Callable[..., list[Book]]:
    """``make_books(symbol, count, seed=, start_ms=, gaps_ms=)``: synthetic books (above)."""
    return _synthetic_books


LONG_START_MS = 1_700_005_000_000
"""23:36:40 UTC: a series from here crosses midnight, closing candles of every interval."""


@pytest.fixture(scope="session")
def make_long_books() -> Callable[..., list[Book]]:
    """``make_long_books(symbol, count, seed=)``: books 20 ms to 2 min apart from
    ``LONG_START_MS`` (600 of them span over an hour and close a candle of every interval)."""

    def make(symbol: str, count: int, *, seed: int = 1) -> list[Book]:
        return _synthetic_books(
            symbol, count, seed=seed, start_ms=LONG_START_MS, gaps_ms=(20, 120_000)
        )

    return make
