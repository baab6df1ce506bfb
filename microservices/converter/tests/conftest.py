"""Inputs for the converter's tests: books rebuilt from a real Binance recording.

The NKNUSDT session (2021-10-11) is replayed by Binance's documented rules for a local order
book: take the REST snapshot, drop the buffered events with ``u <= lastUpdateId``, the first
applied one must straddle ``lastUpdateId + 1``, each later one must start at the previous
``u + 1``, and a quantity of zero removes the level. The crawler owns the real implementation;
this is the smallest faithful one, so the converter's tests do not wait for it.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from fairprice.common.messages import Book

RECORDING = Path("/work/shared/data/binance-recordings/cryptofeed-binance-2021-10-11")
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
