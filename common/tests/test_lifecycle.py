"""run_service as a real process: exit codes, SIGTERM, the settings message, the collector."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from fairprice.common.lifecycle import GC_THRESHOLDS

SERVICE = """
import asyncio
import gc
import os
from fairprice.common.lifecycle import install_signal_handlers, run_service
from fairprice.common.logs import get_logger
from fairprice.common.settings import ServiceSettings

async def run(settings: ServiceSettings) -> None:
    stop = install_signal_handlers()
    get_logger("demo").info("running", gc=list(gc.get_threshold()), frozen=gc.get_freeze_count())
    await stop.wait()
    await asyncio.sleep(float(os.environ.get("CLEANUP_S", "0")))
    get_logger("demo").info("cleaned up")

run_service("demo", ServiceSettings, run)
"""


def _start(tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FAIRPRICE_")}
    return subprocess.Popen(
        [sys.executable, "-c", SERVICE],
        cwd=tmp_path,  # no clusters_dev.toml here
        env={**clean, **env, "FAIRPRICE_LOG__FORMAT": "json"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_run_service_exits_2_naming_the_bad_setting(tmp_path: Path) -> None:
    proc = _start(tmp_path, FAIRPRICE_LOG__LEVEL="LOUD")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert err.splitlines() == [
        "fairprice-demo: invalid setting log.level (env FAIRPRICE_LOG__LEVEL; no config file): "
        "Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR', got 'LOUD'"
    ]


def test_run_service_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    assert proc.stderr is not None
    # Read log lines until the service says it runs (the test's own timeout bounds this).
    while '"event": "running"' not in (line := proc.stderr.readline()):
        assert line, "the service exited before it ran"
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert '"event": "stopping"' in rest and '"signal": "SIGTERM"' in rest
    assert '"event": "cleaned up"' in rest
    assert '"service": "demo"' in rest


def test_run_service_takes_one_ctrl_c_delivered_twice_as_one(tmp_path: Path) -> None:
    """``uv run`` forwards the terminal's SIGINT to a child that got it already: two SIGINTs
    back to back still stop the service gracefully (its cleanup runs)."""
    proc = _start(tmp_path, CLEANUP_S="0.3")
    assert proc.stderr is not None
    while '"event": "running"' not in (line := proc.stderr.readline()):
        assert line, "the service exited before it ran"
    proc.send_signal(signal.SIGINT)
    while '"event": "stopping"' not in (line := proc.stderr.readline()):
        assert line, "the service exited before it stopped"
    proc.send_signal(signal.SIGINT)  # uv's copy, after the first was handled
    _, rest = proc.communicate(timeout=30)
    assert proc.returncode == 0, rest
    assert '"event": "cleaned up"' in rest
    assert "second signal" not in rest


def test_run_service_collects_garbage_by_its_thresholds_with_start_up_frozen(
    tmp_path: Path,
) -> None:
    proc = _start(tmp_path)
    assert proc.stderr is not None
    while '"event": "running"' not in (line := proc.stderr.readline()):
        assert line, "the service exited before it ran"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    running = json.loads(line)
    assert running["gc"] == list(GC_THRESHOLDS) != list(gc.get_threshold())
    assert running["frozen"] > 1000  # the modules and settings loaded before the loop
