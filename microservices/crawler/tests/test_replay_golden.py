"""Golden replay of real Binance traffic (../shared/data/binance-recordings), intact and mutated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fairprice.common.messages import Book, decode
from fairprice.common.testing import recordings_dir
from fairprice.crawler.binance import Binance
from fairprice.crawler.recording import Format, Record, read_recording
from fairprice.crawler.replay import Replayer, main

RECORDINGS = recordings_dir()
OCT = RECORDINGS / "cryptofeed-binance-2021-10-11"
AUG = RECORDINGS / "cryptofeed-binance-2021-08-14"


def _replay(records: list[Record]) -> tuple[Replayer, list[Book], dict[str, int]]:
    """Replay with every event published; check the book against each bookTicker frame.

    Binance sends bookTicker in real time and diff events every 100 ms, so a ticker usually
    arrives before the diff event that ends at its ``u``: tickers are matched by update id
    with the published book of the event whose final id is that ``u``.
    """
    tickers: dict[tuple[str, int], list[dict[str, object]]] = {}
    for record in records:
        if record.kind == "ws" and "@bookTicker" in record.data:
            ticker = json.loads(record.data)["data"]
            tickers.setdefault((ticker["s"], ticker["u"]), []).append(ticker)
    replayer = Replayer(Binance(), every_event=True)
    books: list[Book] = []
    checked: dict[str, int] = {}
    for record in records:
        for book in replayer.feed(record):
            books.append(book)
            for ticker in tickers.get((book.symbol, book.update_id), []):
                assert book.bids[:1] == [(ticker["b"], ticker["B"])], ticker
                assert book.asks[:1] == [(ticker["a"], ticker["A"])], ticker
                checked[book.symbol] = checked.get(book.symbol, 0) + 1
    return replayer, books, checked


def _depth_records(records: list[Record], symbol: str) -> list[int]:
    stream = f'"{symbol.lower()}@depth@100ms"'
    return [i for i, r in enumerate(records) if r.kind == "ws" and stream in r.data]


@pytest.mark.parametrize(
    ("directory", "symbol", "snapshot_id", "events", "dropped", "applied"),
    [(OCT, "NKNUSDT", 499869752, 150, 1, 149), (AUG, "FTMUSDT", 800360994, 229, 7, 222)],
)
def test_replay_matches_binance_book_ticker(
    directory: Path, symbol: str, snapshot_id: int, events: int, dropped: int, applied: int
) -> None:
    records = read_recording(directory, Format.CRYPTOFEED)
    replayer, books, checked = _replay(records)
    sync = replayer.engine.symbols[symbol]
    assert (sync.events, sync.dropped, sync.applied) == (events, dropped, applied)
    assert dict(sync.resyncs) == {"initial": 1}
    first = next(b for b in books if b.symbol == symbol)
    assert first.first_update_id <= snapshot_id + 1 <= first.update_id
    assert checked.get(symbol, 0) >= 10, checked
    for other in replayer.engine.symbols.values():
        assert other.synced and dict(other.resyncs) == {"initial": 1}
    # Published ids of a symbol are contiguous: every event after the snapshot is in BOOKS.
    ids = [(b.first_update_id, b.update_id) for b in books if b.symbol == symbol]
    assert all(nxt[0] == prev[1] + 1 for prev, nxt in zip(ids, ids[1:], strict=False))


def test_replay_with_an_event_removed_resyncs_that_symbol_only() -> None:
    records = read_recording(OCT, Format.CRYPTOFEED)
    intact, intact_books, _ = _replay(records)

    nkn = _depth_records(records, "NKNUSDT")
    removed = nkn[60]
    resume = nkn[65]  # the fresh snapshot is taken as of this event
    resume_id = json.loads(records[resume].data)["data"]["u"]
    # The full book at resume_id, from the intact run, served as a later REST snapshot.
    probe = Replayer(Binance())
    for record in records[: resume + 1]:
        probe.feed(record)
    book = probe.engine.symbols["NKNUSDT"].book
    assert book.update_id == resume_id
    body = json.dumps(
        {"lastUpdateId": resume_id, "bids": book.bids(10**6), "asks": book.asks(10**6)}
    )
    snapshot = Record(
        t=records[resume].t,
        kind="rest",
        url="https://api.binance.com/api/v3/depth?symbol=NKNUSDT&limit=1000",
        status=200,
        data=body,
    )
    mutated = records[:removed] + records[removed + 1 : resume + 1] + [snapshot]
    mutated += records[resume + 1 :]

    replayer, books, checked = _replay(mutated)
    nkn_sync = replayer.engine.symbols["NKNUSDT"]
    assert dict(nkn_sync.resyncs) == {"initial": 1, "gap": 1}
    assert nkn_sync.synced
    for symbol, sync in replayer.engine.symbols.items():
        if symbol != "NKNUSDT":
            assert dict(sync.resyncs) == {"initial": 1}
    # Every other symbol published exactly what the intact run published.
    assert [b for b in books if b.symbol != "NKNUSDT"] == [
        b for b in intact_books if b.symbol != "NKNUSDT"
    ]
    # NKNUSDT converged: from the fresh snapshot on, the same books as the intact run.
    after = [b for b in books if b.symbol == "NKNUSDT" and b.update_id > resume_id]
    intact_after = [b for b in intact_books if b.symbol == "NKNUSDT" and b.update_id > resume_id]
    assert after == intact_after and after
    end, intact_end = nkn_sync.book, intact.engine.symbols["NKNUSDT"].book
    assert (end.bids(10**6), end.asks(10**6)) == (intact_end.bids(10**6), intact_end.asks(10**6))
    assert checked.get("NKNUSDT", 0) >= 10


def test_replay_with_a_stale_snapshot_fetches_another_and_converges() -> None:
    records = read_recording(AUG, Format.CRYPTOFEED)
    _, intact_books, _ = _replay(records)

    index = next(i for i, r in enumerate(records) if r.kind == "rest" and "symbol=FTMUSDT" in r.url)
    real = json.loads(records[index].data)
    first_u = json.loads(records[_depth_records(records, "FTMUSDT")[0]].data)["data"]["U"]
    stale = dict(real, lastUpdateId=first_u - 5)
    stale_record = Record(
        t=records[index].t, kind="rest", url=records[index].url, status=200, data=json.dumps(stale)
    )
    mutated = records[:index] + [stale_record] + records[index:]

    replayer, books, _ = _replay(mutated)
    ftm = replayer.engine.symbols["FTMUSDT"]
    assert dict(ftm.resyncs) == {"initial": 1, "stale_snapshot": 1}
    assert (ftm.dropped, ftm.applied) == (7, 222)
    assert books == intact_books


def test_replay_main_prints_one_book_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--format", "cryptofeed", str(OCT)]) == 0
    out, err = capsys.readouterr()
    books = [decode(line, Book) for line in out.splitlines()]
    assert {b.symbol for b in books} == {"NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"}
    assert all(len(b.bids) <= 20 and len(b.asks) <= 20 for b in books)
    assert "NKNUSDT: synced update_id=499870179 events=150 applied=149 dropped=1" in err


def test_replay_main_without_traffic_file_hints_at_cryptofeed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([str(OCT)]) == 2
    assert "--format cryptofeed" in capsys.readouterr().err
