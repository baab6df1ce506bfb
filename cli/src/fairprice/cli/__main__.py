"""The `fairprice` command.

fairprice run      the whole pipeline locally against live Binance
fairprice demo     the same against the bundled simulator (no internet needed)
fairprice top      a live terminal board of every symbol
fairprice status   services' readiness, streams and consumer lag
fairprice replay   run a recording through the crawler's sync code, offline
fairprice price    a symbol's latest fair price, from the price API
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import get_args

from fairprice.api.settings import ApiSettings
from fairprice.cli import local
from fairprice.cli.board import IndicatorColumn, SortKey, run_top
from fairprice.cli.price import run_price
from fairprice.cli.status import run_status
from fairprice.common.errors import FairpriceError, SettingsError
from fairprice.common.lifecycle import install_signal_handlers
from fairprice.common.logs import configure_logging
from fairprice.common.settings import LogSettings, ServiceSettings, load_settings
from fairprice.converter.settings import ConverterSettings
from fairprice.crawler.replay import DESCRIPTION as REPLAY
from fairprice.crawler.replay import add_arguments as add_replay_arguments
from fairprice.crawler.replay import replay
from fairprice.crawler.settings import CrawlerSettings
from fairprice.storer.settings import StorerSettings

__all__ = ["main"]


def _local_services() -> dict[str, str]:
    """Where each service answers in a local run (`fairprice run` / `demo`): the
    ``[<service>.http] port`` of the configuration."""
    ports = {
        "crawler": load_settings(CrawlerSettings).crawler.http.port,
        "converter": load_settings(ConverterSettings).converter.http.port,
        "storer": load_settings(StorerSettings).storer.http.port,
    }
    return {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fairprice", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "the pipeline against live Binance"),
        ("demo", "the pipeline against the bundled simulator, offline"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "--state-dir",
            type=Path,
            default=Path(".state"),
            help="where nats-server and influxd keep their data (default .state)",
        )
        if name == "demo":
            p.add_argument(
                "--symbols",
                type=int,
                default=0,
                metavar="N",
                help="simulate N more symbols (SIM0000USDT...) besides the configured ones",
            )
    top = sub.add_parser("top", help="a live board of every symbol (over NATS)")
    top.add_argument("--sort", choices=get_args(SortKey), default="symbol")
    top.add_argument("--limit", type=int, default=40, help="rows shown (default 40)")
    top.add_argument(
        "--indicator",
        choices=get_args(IndicatorColumn),
        default=None,
        help="add a column with this indicator of each symbol's latest candle",
    )
    status = sub.add_parser("status", help="readiness, streams and consumer lag")
    status.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="a service's base URL (repeatable; default: the local run's)",
    )
    price = sub.add_parser("price", help="a symbol's latest fair price (from the price API)")
    price.add_argument("symbol", help="e.g. BTCUSDT")
    price.add_argument("--exchange", help="binance, sim, ... (default: every exchange)")
    price.add_argument("--url", help="the API (default: the local run's, [api] port)")
    price.add_argument("--token", help="bearer token (default: [api] token)")
    price.add_argument("--json", action="store_true", help="the API's JSON, one per line")
    replay = sub.add_parser(
        "replay", help="replay a recording offline, one JSON book per line", description=REPLAY
    )
    add_replay_arguments(replay)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    try:
        sys.exit(_dispatch(args))
    except SettingsError as exc:
        for line in str(exc).splitlines():
            print(f"fairprice: {line}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except FairpriceError as exc:
        hint = ""
        if args.command in ("top", "status") and "NATS" in str(exc):
            hint = " (is `make run` or `make demo` running?)"
        if args.command == "price" and "cannot reach" in str(exc):
            hint = " (is `make run` or `make demo` running?)"
        print(f"fairprice {args.command}: {exc}{hint}", file=sys.stderr)
        sys.exit(1)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "replay":
        return replay(args)
    settings = load_settings(ServiceSettings)
    configure_logging(LogSettings(level="WARNING"), service="fairprice")
    if args.command in ("run", "demo"):
        mode: local.Mode = "live" if args.command == "run" else "demo"
        configure_logging(settings.log, service="fairprice")
        return local.main(mode, args.state_dir, getattr(args, "symbols", 0))
    if args.command == "price":
        api = load_settings(ApiSettings).api
        url = args.url or f"http://127.0.0.1:{api.port}"
        token = args.token or (api.token.get_secret_value() if api.token else None)
        return asyncio.run(run_price(url, args.symbol, args.exchange, token, args.json))
    if args.command == "status":
        services = _local_services()
        services.update(dict(item.split("=", 1) for item in args.service))
        return asyncio.run(run_status(settings, services))

    async def top() -> None:
        await run_top(settings, args.sort, args.limit, install_signal_handlers(), args.indicator)

    asyncio.run(top())
    return 0


if __name__ == "__main__":
    main()
