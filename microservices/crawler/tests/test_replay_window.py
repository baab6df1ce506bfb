"""`fairprice replay` reports each symbol's known-correct depth and window edges."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from fairprice.common.testing import recordings_dir

OCT = recordings_dir() / "cryptofeed-binance-2021-10-11"


async def test_replay_reports_the_known_correct_depth_per_symbol() -> None:
    # As the README shows it: the `fairprice` command, options before the directory.
    replay = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fairprice.cli",
        "replay",
        "--format",
        "cryptofeed",
        str(OCT),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(replay.communicate(), 60)
    assert replay.returncode == 0, stderr
    lines = {line.split(":")[0]: line for line in stderr.decode().splitlines()}
    # The 1,000-level snapshot held all 614 NKNUSDT bids (fewer than asked: the whole side)
    # and 1,000 asks out to 0.55060000, of which 994 are left inside that edge.
    assert lines["NKNUSDT"].endswith("known bids=614 asks=994 edge bids=whole asks=0.55060000")
    assert lines["RUNEEUR"].endswith("edge bids=whole asks=whole")
