"""Whatever signal ends a program running a ``Pipeline``, none of the processes it started
is left behind: not the services, not nats-server or influxd, not a spawned program that
ignores SIGTERM (issue 14: a converter once outlived ``bench/end_to_end.py``'s Ctrl-C).

The parent is a real process (tests/e2e/harness_parent.py); its children are found by the
PIDs it prints and by the run's own folder (in their command line or ``FAIRPRICE_CONFIG``),
so that nobody else's nats-server or influxd is ever counted, or touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import psutil
import pytest

from fairprice.common.testing import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

PARENT = Path(__file__).with_name("harness_parent.py")


def _of_run(workdir: Path, pids: set[int]) -> list[psutil.Process]:
    """Live processes that this run started: by PID, or naming its folder."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if proc.pid in pids:
                found.append(proc)
                continue
            cmdline = " ".join(proc.info["cmdline"] or [])
            config = proc.environ().get("FAIRPRICE_CONFIG", "")
            if str(workdir) in cmdline or config.startswith(str(workdir)):
                found.append(proc)
    return found


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
async def test_harness_children_die_with_the_parent(tmp_path: Path, sig: signal.Signals) -> None:
    workdir = tmp_path / "run"
    parent = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PARENT),
        str(workdir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith("FAIRPRICE_")},
        # A shell's background job inherits SIGINT ignored, and Python keeps it ignored:
        # the parent must meet SIGINT as a terminal's Ctrl-C would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert parent.stdout is not None
        first = await asyncio.wait_for(parent.stdout.readline(), 120)
        started = json.loads(first)
        pids = set(started["pids"]) | {started["extra"]}
        # nats-server, influxd, storer, converter and the extra program: all up, all ours.
        assert len(pids) == 5
        assert {p.pid for p in _of_run(workdir, pids)} >= pids
        parent.send_signal(sig)
        await asyncio.wait_for(parent.wait(), 90)
        await eventually(
            lambda: not _of_run(workdir, pids),
            within=30,
            what=f"every child of the run gone after {sig.name}",
        )
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()
        for proc in _of_run(workdir, set()):  # only what names this run's folder
            with contextlib.suppress(psutil.Error):
                proc.kill()
