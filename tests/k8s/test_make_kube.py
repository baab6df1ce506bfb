"""`make kube`, as a person runs it in a terminal: it prints the pods' states as they change
(the columns of `kubectl get pods -w`) until every pod is Ready, and Ctrl-C (SIGINT to the
terminal's process group) stops every pod and leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import psutil
import pytest

from .conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]

LINE = re.compile(r"^(fairprice-\S+)\s+(\d)/(\d)\s+(\S+)\s+(\d+)\s+\d+s$")


def test_make_kube_watches_pods_and_ctrl_c_leaves_nothing_behind() -> None:
    make = subprocess.Popen(
        ["make", "-s", "kube"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    assert make.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 150
    try:
        for line in make.stdout:
            lines.append(line.rstrip("\n"))
            if "Ctrl-C stops everything" in line or time.monotonic() > deadline:
                break
        processes = psutil.Process(make.pid).children(recursive=True)
        os.killpg(make.pid, signal.SIGINT)
        rest, _ = make.communicate(timeout=120)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
    lines += rest.splitlines()
    output = "\n".join(lines)
    assert any(re.match(r"^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE$", line) for line in lines)
    states: dict[str, list[str]] = {}
    for line in lines:
        if found := LINE.match(line):
            states.setdefault(found[1], []).append(f"{found[2]}/{found[3]} {found[4]}")
    crawler = next(v for k, v in states.items() if k.startswith("fairprice-crawler-"))
    assert crawler[0].endswith("ContainerCreating") and "1/1 Running" in crawler, output
    assert "every pod Ready in" in output and "stopped" in lines[-1], output
    assert len(processes) >= 8, "make, uv, the harness and its pods"
    left = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == [], f"left behind: {left}"
    print(f"\n{len(processes)} processes, none left; pods seen: {sorted(states)}")
