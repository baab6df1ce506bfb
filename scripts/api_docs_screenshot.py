"""The price API's interactive docs page in headless Chromium, with no network: a screenshot
and the endpoints the page lists.

    uv run python scripts/api_docs_screenshot.py [--url http://127.0.0.1:8000] [--out DIR]

Without ``--url`` it serves the API application itself on a free loopback port (the docs
page, its assets and /openapi.json need no NATS or InfluxDB). Chromium runs with every host
name but 127.0.0.1 unresolvable, so a page that needed the internet would render empty.
Writes ``DIR/api-docs.png`` and ``DIR/api-docs.html`` (the rendered DOM), prints the paths
the page lists, and exits 1 when one of the OpenAPI document's paths is missing from it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from prometheus_client import CollectorRegistry

from fairprice.api.app import create_app
from fairprice.api.metrics import ApiMetrics
from fairprice.api.openapi import document
from fairprice.api.service import ApiServer, listening_socket
from fairprice.api.settings import ApiSection

CHROMIUM = "chromium"
_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1280,1800",
    "--virtual-time-budget=20000",
    # No network but loopback: any other host name fails to resolve.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


def chromium() -> str:
    found = shutil.which(CHROMIUM) or shutil.which("chromium-browser")
    if found is None:
        raise SystemExit(
            "api_docs_screenshot: Debian's chromium is not installed "
            "(apt-get install chromium; `make setup` installs it)"
        )
    return found


def _run(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium(), *_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def capture(url: str, out: Path) -> list[str]:
    """Screenshot and DOM of ``url``'s /docs into ``out``; the API paths the page lists."""
    out.mkdir(parents=True, exist_ok=True)
    page = url.rstrip("/") + "/docs"
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        _run([f"--screenshot={out / 'api-docs.png'}", page], Path(profile))
        dom = _run(["--dump-dom", page], Path(profile)).stdout
    (out / "api-docs.html").write_text(dom)
    return sorted(set(re.findall(r'data-path="([^"]+)"', dom)))


@contextlib.asynccontextmanager
async def _serve_app() -> AsyncIterator[str]:
    app = create_app(ApiSection(), ApiMetrics(CollectorRegistry()))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
    server = ApiServer(config)
    sock = listening_socket(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def _main(url: str | None, out: Path) -> int:
    if url is None:
        async with _serve_app() as served:
            listed = await asyncio.to_thread(capture, served, out)
    else:
        listed = await asyncio.to_thread(capture, url, out)
    expected = sorted(document()["paths"])
    print(f"screenshot: {out / 'api-docs.png'}")
    print("listed:", ", ".join(listed) or "(nothing)")
    missing = sorted(set(expected) - set(listed))
    if missing:
        print("MISSING from the page:", ", ".join(missing))
        return 1
    print(f"every endpoint of the OpenAPI document is on the page ({len(expected)})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running API (default: serve the app here)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="output folder")
    args = parser.parse_args(argv)
    return asyncio.run(_main(args.url, args.out))


if __name__ == "__main__":
    sys.exit(main())
