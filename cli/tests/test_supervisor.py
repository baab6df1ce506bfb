"""The local supervisor with real child processes."""

from __future__ import annotations

import asyncio
import io
import sys

from fairprice.cli.supervisor import ServiceSpec, Supervisor
from fairprice.common.testing import eventually

# A child that prints, then waits for SIGTERM and says so (or dies at once when asked to). Its
# handler is in place before it prints: the test sends SIGTERM once it has seen the output.
CHILD = """
import signal, sys, time
name = sys.argv[1]
signal.signal(signal.SIGTERM, lambda *_: (print(f"{name} got SIGTERM", flush=True), sys.exit(0)))
print(f"hello from {name}", flush=True)
if sys.argv[2] == "die":
    sys.exit(3)
while True:
    time.sleep(0.05)
"""


def _spec(name: str, mode: str = "live") -> ServiceSpec:
    return ServiceSpec(name, [sys.executable, "-c", CHILD, name, mode])


async def test_supervisor_prefixes_output_and_stops_in_reverse_order() -> None:
    out = io.StringIO()
    supervisor = Supervisor([_spec("storer"), _spec("crawler")], out=out)
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.run(stop))
    await eventually(lambda: "crawler | hello from crawler" in out.getvalue(), what="output")
    await eventually(lambda: "storer  | hello from storer" in out.getvalue(), what="output")
    stop.set()
    await task
    lines = out.getvalue().splitlines()
    stopped = [line for line in lines if "got SIGTERM" in line]
    assert stopped == ["crawler | crawler got SIGTERM", "storer  | storer got SIGTERM"]


async def test_supervisor_restarts_a_child_that_dies() -> None:
    out = io.StringIO()
    supervisor = Supervisor([_spec("flaky", "die")], out=out)
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.run(stop))
    await eventually(lambda: supervisor.restarts["flaky"] >= 2, within=15, what="two restarts")
    stop.set()
    await task
    assert "flaky | exited with code 3; restarting in 1s" in out.getvalue()
    assert out.getvalue().count("hello from flaky") >= 2
