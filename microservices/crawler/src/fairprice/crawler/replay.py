"""``fairprice replay DIR``: run recorded traffic through the crawler's sync code, offline.

Prints one JSON line per published book (the same ``Book`` message the crawler publishes) to
stdout, and a summary per symbol to stderr, with the known-correct depth of each side at the
end (``known bids=N asks=M``, and each side's window edge, ``whole`` when the snapshot held
the side entirely). ``--format cryptofeed`` reads recordings made by
cryptofeed's raw-data collector; the default reads ``fairprice-crawler --record DIR`` output
(both described in ``fairprice.crawler.recording`` and docs/crawler.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from fairprice.common.errors import InvalidMessageError
from fairprice.common.messages import Book, encode
from fairprice.crawler.adapters import EXCHANGES, exchange_for
from fairprice.crawler.exchange import DepthEvent, Exchange
from fairprice.crawler.recording import Format, Record, read_recording
from fairprice.crawler.sync import SyncEngine

__all__ = ["DESCRIPTION", "Replayer", "add_arguments", "main", "replay"]


class Replayer:
    """Feeds records to a ``SyncEngine``: depth frames as events, depth REST responses as
    snapshots. Every symbol with depth events is synced; a snapshot arrives when the recording
    says it did, and a symbol that needs one waits (buffering) until the recording has one."""

    def __init__(self, exchange: Exchange, *, depth: int = 20, every_event: bool = False) -> None:
        self.exchange = exchange
        self.engine = SyncEngine(exchange, depth=depth, every_event=every_event)
        self.malformed = 0
        self.snapshotted: set[str] = set()
        """The symbols the recording had a depth snapshot of."""

    def feed(self, record: Record) -> list[Book]:
        engine = self.engine
        if record.kind == "ws":
            try:
                frame = self.exchange.parse_frame(record.data)
            except InvalidMessageError:
                self.malformed += 1
                return []
            if not isinstance(frame, DepthEvent):
                return []
            engine.add(frame.symbol)
            book = engine.on_event(frame, round(record.t * 1000))
            return [] if book is None else [book]
        if record.kind == "rest" and record.status == 200:
            symbol = self.exchange.snapshot_symbol(record.url)
            if symbol is None:
                return []
            engine.add(symbol)
            try:
                snapshot = self.exchange.parse_snapshot(record.data.encode())
            except InvalidMessageError:
                self.malformed += 1
                return []
            self.snapshotted.add(symbol)
            limit = self.exchange.snapshot_limit(record.url)
            return engine.on_snapshot(symbol, dataclasses.replace(snapshot, limit=limit))
        return []

    def run(self, records: Iterable[Record]) -> Iterator[Book]:
        for record in records:
            yield from self.feed(record)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The replay's options and its ``DIR``, on ``parser`` (this module's own, or the
    ``fairprice replay`` subcommand's)."""
    parser.add_argument("directory", type=Path, metavar="DIR")
    parser.add_argument(
        "--format", choices=[f.value for f in Format], default=Format.FAIRPRICE.value
    )
    parser.add_argument("--exchange", choices=sorted(EXCHANGES), default="binance")
    parser.add_argument("--depth", type=int, default=20, help="levels per side (default 20)")
    parser.add_argument(
        "--every-event", action="store_true", help="a book after every applied event"
    )


DESCRIPTION = (
    "Replay recorded exchange traffic through the crawler's sync code, offline; "
    "print one JSON line per published book."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fairprice replay", description=DESCRIPTION)
    add_arguments(parser)
    return replay(parser.parse_args(argv))


def replay(args: argparse.Namespace) -> int:
    """Replay ``args.directory`` (options of ``add_arguments``): 0, 1 when a symbol never got
    a snapshot (nothing of it could be replayed), 2 when the recording cannot be read."""
    try:
        records = read_recording(args.directory, Format(args.format))
    except (OSError, InvalidMessageError, ValueError) as exc:
        print(f"fairprice replay: {exc}", file=sys.stderr)
        return 2
    replayer = Replayer(exchange_for(args.exchange), depth=args.depth, every_event=args.every_event)
    out = sys.stdout.buffer
    try:
        for book in replayer.run(records):
            out.write(encode(book) + b"\n")
        out.flush()
    except BrokenPipeError:  # the reader went away (`| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    engine = replayer.engine
    for symbol, sync in sorted(engine.symbols.items()):
        resyncs = ",".join(f"{k}={v}" for k, v in sorted(sync.resyncs.items()))
        bids, asks = sync.book.windows()
        print(
            f"{symbol}: {sync.state.value} update_id={sync.book.update_id} events={sync.events} "
            f"applied={sync.applied} dropped={sync.dropped} resyncs[{resyncs}] "
            f"known bids={bids.known} asks={asks.known} "
            f"edge bids={bids.edge or 'whole'} asks={asks.edge or 'whole'}",
            file=sys.stderr,
        )
    if replayer.malformed:
        print(f"malformed records skipped: {replayer.malformed}", file=sys.stderr)
    missing = sorted(engine.symbols.keys() - replayer.snapshotted)
    if missing:
        print(
            f"fairprice replay: no depth snapshot in {args.directory} for "
            f"{', '.join(missing)}: nothing of {'it' if len(missing) == 1 else 'them'} replayed",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
