"""Run services as child processes the way Kubernetes would: restart what dies, stop in order.

Each child's output is read line by line and printed with its service name in front, so one
terminal shows the whole pipeline. A child that exits on its own is started again after a
short backoff (so `kill -9` of a service shows recovery, as a pod restart would). Stopping
sends SIGTERM in reverse start order (producers first, so the storer flushes what they sent
last) and SIGKILL only after the grace period.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import TextIO

from fairprice.common.lifecycle import die_with_parent, wait_or_stop

__all__ = ["ServiceSpec", "Supervisor"]

_COLOURS = ["36", "35", "33", "32", "34", "31"]


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


class Supervisor:
    def __init__(
        self, services: list[ServiceSpec], *, out: TextIO | None = None, grace_s: float = 20.0
    ) -> None:
        self._services = services
        self._out = out or sys.stdout
        self._grace_s = grace_s
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._stopping = False
        width = max(len(s.name) for s in services)
        colour = self._out.isatty()
        self._prefix = {
            s.name: (
                f"\x1b[{_COLOURS[i % len(_COLOURS)]}m{s.name:<{width}} |\x1b[0m "
                if colour
                else f"{s.name:<{width}} | "
            )
            for i, s in enumerate(services)
        }
        self.restarts: dict[str, int] = {s.name: 0 for s in services}

    def say(self, line: str) -> None:
        self._write(line + "\n")

    def _write(self, text: str) -> None:
        # A closed terminal or pipe (`| head`, a killed tee) must not stop the shutdown.
        try:
            self._out.write(text)
            self._out.flush()
        except (BrokenPipeError, ValueError):
            pass

    async def run(self, stop: asyncio.Event) -> None:
        """Start every service, keep them running until ``stop`` is set, then stop them."""
        async with asyncio.TaskGroup() as tg:
            for spec in self._services:
                tg.create_task(self._keep_running(spec, stop), name=f"supervise-{spec.name}")
            await stop.wait()
            self._stopping = True
            for spec in reversed(self._services):
                await self._terminate(spec.name)

    async def _keep_running(self, spec: ServiceSpec, stop: asyncio.Event) -> None:
        backoff = 1.0
        while not stop.is_set():
            proc = await asyncio.create_subprocess_exec(
                *spec.argv,
                env={**os.environ, **spec.env},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
                preexec_fn=die_with_parent,  # and if we die anyway, so do they
                limit=1024 * 1024,
            )
            self._procs[spec.name] = proc
            assert proc.stdout is not None
            async for raw in proc.stdout:
                self._write(self._prefix[spec.name] + raw.decode(errors="replace"))
            code = await proc.wait()
            if self._stopping or stop.is_set():
                return
            self.restarts[spec.name] += 1
            prefix = self._prefix[spec.name]
            self.say(f"{prefix}exited with code {code}; restarting in {backoff:.0f}s")
            await wait_or_stop(stop, backoff)
            backoff = min(backoff * 2, 30.0)

    async def _terminate(self, name: str) -> None:
        proc = self._procs.get(name)
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self._grace_s)
        except TimeoutError:
            self.say(f"{self._prefix[name]}did not stop in {self._grace_s:.0f}s; killing it")
            proc.kill()
            await proc.wait()
