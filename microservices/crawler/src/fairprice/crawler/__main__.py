"""``fairprice-crawler [--record DIR]``: the crawler service (settings: docs/crawler.md)."""

from __future__ import annotations

import argparse
import sys

from fairprice.common.lifecycle import run_service
from fairprice.crawler.service import run
from fairprice.crawler.settings import CrawlerSettings

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="fairprice-crawler",
        description="Keep exchange order books in sync and publish the top-N books to NATS.",
    )
    parser.add_argument(
        "--record",
        metavar="DIR",
        help="write the raw REST and WebSocket traffic to DIR (replay it with fairprice replay)",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    # The setting crawler.record, given on the command line.
    overrides = {"crawler": {"record": args.record}} if args.record else None
    run_service("crawler", CrawlerSettings, run, overrides)


if __name__ == "__main__":
    main()
