"""The kubelet's part for one pod: start each container as a process in its sandbox, run its
startup, readiness and liveness probes, restart it per ``restartPolicy`` with Kubernetes'
back-off, and stop it (preStop hook, SIGTERM, SIGKILL after terminationGracePeriodSeconds)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fairprice.common.lifecycle import wait_or_stop

from .images import Program
from .probes import Probe
from .sandbox import Sandbox

__all__ = ["BACKOFF_MAX_S", "Container", "Pod", "restart_delay"]

BACKOFF_BASE_S = 10.0
BACKOFF_MAX_S = 300.0
BACKOFF_RESET_S = 600.0
"""The kubelet's crash back-off: a container that exits is started again at once the first
time, then after 10 s, 20 s, 40 s ... at most 5 minutes; 10 minutes of running resets it."""


def restart_delay(consecutive: int) -> float:
    """Seconds before the restart after ``consecutive`` quick exits in a row (1: the first)."""
    if consecutive <= 1:
        return 0.0
    return min(BACKOFF_BASE_S * 2 ** (consecutive - 2), BACKOFF_MAX_S)


@dataclass
class Container:
    pod: Pod
    spec: dict[str, Any]
    program: Program
    env: dict[str, str]
    sandbox: Sandbox
    restarts: int = 0
    started: bool = False
    ready: bool = False
    state: str = "Waiting"
    reason: str = "ContainerCreating"
    exit_code: int | None = None
    last_exit_code: int | None = None
    """The exit code of the previous run (``kubectl``'s lastState.terminated.exitCode)."""
    process: asyncio.subprocess.Process | None = None
    log_path: Path = field(init=False)
    _crashes: int = 0

    def __post_init__(self) -> None:
        self.log_path = self.pod.root / f"{self.name}.log"

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def _set(self, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(self, key, value)
        self.pod.changed()

    async def _spawn(self, argv: list[str]) -> asyncio.subprocess.Process:
        env = {**self.program.env, **self.env, **self.program.listen_env}
        with self.log_path.open("ab") as log:
            return await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                cwd=self.spec.get("workingDir") or "/",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=self.sandbox.preexec(),
            )

    async def exec(self, argv: list[str], timeout: float) -> int:  # noqa: ASYNC109
        """``kubectl exec``: ``argv`` in the container's view of the filesystem; its exit code
        (-1 when it did not finish within ``timeout``)."""
        env = {**self.program.env, **self.env}
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                preexec_fn=self.sandbox.preexec(),
            )
        except OSError as exc:
            self._log(f"exec {argv}: {exc}")
            return 126
        try:
            async with asyncio.timeout(timeout):
                return await process.wait()
        except TimeoutError:
            return -1
        finally:
            # Timed out, or cancelled (a probe's own deadline, the pod's deletion): reaped
            # here, never left running for the event loop to drop.
            await _reap(process)

    async def run(self) -> None:
        """Keep the container running as its pod's ``restartPolicy`` says, until the pod stops."""
        policy = self.pod.spec.get("restartPolicy", "Always")
        while not self.pod.deleting.is_set():
            started_at = time.monotonic()
            try:
                process = self.process = await self._spawn(self.program.argv)
            except OSError as exc:  # the runtime's "executable file not found" and the like
                self._log(f"cannot start {self.program.argv[0]}: {exc}")
                self._crashes += 1
                self._set(state="Waiting", reason="RunContainerError", exit_code=None)
                if await wait_or_stop(self.pod.deleting, restart_delay(self._crashes) or 1.0):
                    return
                continue
            self._set(state="Running", reason="", exit_code=None)
            probes = asyncio.create_task(self._probes(process, started_at))
            try:
                exited = asyncio.create_task(process.wait())
                await asyncio.wait({probes, exited}, return_when=asyncio.FIRST_COMPLETED)
                if probes.done() and not exited.done():
                    failure = probes.result()
                    self._log(f"{failure}: killing the container")
                    await self.stop(self.pod.grace_period)
                code = await exited
            finally:
                # A probe's exec in flight is reaped before the container counts as stopped,
                # and the container's other processes go with its main one, as a PID
                # namespace's do (also when this task is cancelled).
                probes.cancel()
                await asyncio.gather(probes, return_exceptions=True)
                await _reap(process)
            ran = time.monotonic() - started_at
            reason = "Completed" if code == 0 else "Error"
            self._set(
                state="Terminated",
                reason=reason,
                exit_code=code,
                last_exit_code=code,
                ready=False,
                started=False,
            )
            if self.pod.deleting.is_set():
                return
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                return
            self._crashes = 1 if ran > BACKOFF_RESET_S else self._crashes + 1
            delay = restart_delay(self._crashes)
            if delay:
                self._set(state="Waiting", reason="CrashLoopBackOff")
            if await wait_or_stop(self.pod.deleting, delay):
                return
            self.restarts += 1

    def _log(self, line: str) -> None:
        with self.log_path.open("a") as log:
            log.write(f"--- harness: {line}\n")

    async def _probes(self, process: asyncio.subprocess.Process, started_at: float) -> str:
        """Run the probes of one container start; return why it must be killed (never returns
        while it is healthy)."""
        address = self.pod.address
        startup = self.spec.get("startupProbe")
        if startup:
            probe = Probe(startup)
            await asyncio.sleep(probe.initial_delay)
            failures = 0
            while not await probe.check(address, self.spec, self.exec):
                failures += 1
                if failures >= probe.failure_threshold:
                    return "startup probe failed"
                await asyncio.sleep(probe.period)
        readiness = self.spec.get("readinessProbe")
        self._set(started=True, ready=readiness is None)
        tasks = []
        if readiness:
            tasks.append(asyncio.create_task(self._readiness(Probe(readiness), started_at)))
        liveness = self.spec.get("livenessProbe")
        try:
            if liveness is None:
                await asyncio.Event().wait()
            return await self._liveness(Probe(liveness), started_at)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _readiness(self, probe: Probe, started_at: float) -> None:
        await asyncio.sleep(max(0.0, started_at + probe.initial_delay - time.monotonic()))
        successes = failures = 0
        while True:
            if await probe.check(self.pod.address, self.spec, self.exec):
                successes, failures = successes + 1, 0
                if successes >= probe.success_threshold and not self.ready:
                    self._set(ready=True)
            else:
                successes, failures = 0, failures + 1
                if failures >= probe.failure_threshold and self.ready:
                    self._set(ready=False)
            await asyncio.sleep(probe.period)

    async def _liveness(self, probe: Probe, started_at: float) -> str:
        await asyncio.sleep(max(0.0, started_at + probe.initial_delay - time.monotonic()))
        failures = 0
        while True:
            if await probe.check(self.pod.address, self.spec, self.exec):
                failures = 0
            else:
                failures += 1
                if failures >= probe.failure_threshold:
                    return "liveness probe failed"
            await asyncio.sleep(probe.period)

    async def stop(self, grace: float) -> None:
        """preStop hook, SIGTERM, and SIGKILL once ``grace`` seconds have passed."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        deadline = time.monotonic() + grace
        pre_stop = self.spec.get("lifecycle", {}).get("preStop", {})
        if "exec" in pre_stop and grace > 0:
            await self.exec(list(pre_stop["exec"]["command"]), grace)
        _signal(process, signal.SIGTERM)
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await process.wait()
        except TimeoutError:
            self._log(f"not stopped within {grace:g} s: SIGKILL")
            await _reap(process)

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """A signal to the container's processes, as ``kill -9`` inside it would send."""
        if self.process is not None and self.process.returncode is None:
            _signal_group(self.process, sig)


def _signal(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)


def _signal_group(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


async def _reap(process: asyncio.subprocess.Process) -> None:
    """SIGKILL to ``process``'s group (its session: whatever it left behind) and wait for it to
    exit, even when the caller is being cancelled."""
    _signal_group(process, signal.SIGKILL)
    if process.returncode is None:
        await asyncio.shield(process.wait())


@dataclass
class Pod:
    name: str
    workload: str
    address: str
    labels: dict[str, str]
    spec: dict[str, Any]
    root: Path
    on_change: Callable[[Pod], None]
    hostname: str = ""
    subdomain: str = ""
    containers: list[Container] = field(default_factory=list)
    created: float = field(default_factory=time.monotonic)
    deleting: asyncio.Event = field(default_factory=asyncio.Event)
    not_run: str = ""
    """Why the harness does not run this pod (an image that is not installed here)."""
    error: str = ""
    """Why its containers could not be created (CreateContainerConfigError)."""
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def grace_period(self) -> float:
        return float(self.spec.get("terminationGracePeriodSeconds", 30))

    @property
    def ready(self) -> bool:
        return bool(self.containers) and all(c.ready for c in self.containers)

    @property
    def running(self) -> bool:
        return any(c.state == "Running" for c in self.containers)

    @property
    def finished(self) -> bool:
        return bool(self.containers) and all(t.done() for t in self._tasks)

    @property
    def phase(self) -> str:
        if self.finished:
            codes = [c.exit_code for c in self.containers]
            return "Succeeded" if all(code == 0 for code in codes) else "Failed"
        return "Running" if self.running else "Pending"

    @property
    def restarts(self) -> int:
        return sum(c.restarts for c in self.containers)

    def status(self) -> str:
        """The STATUS column of ``kubectl get pods``."""
        if self.not_run:
            return "NotRunHere"
        if self.error:
            return "CreateContainerConfigError"
        if self.deleting.is_set():
            return "Terminating"
        for container in self.containers:
            if container.state == "Waiting" or (
                container.state == "Terminated" and not self.finished
            ):
                return container.reason or container.state
        if self.finished:
            return "Completed" if self.phase == "Succeeded" else "Error"
        return "Running" if self.containers else "Pending"

    def changed(self) -> None:
        self.on_change(self)

    def container(self, name: str) -> Container:
        return next(c for c in self.containers if c.name == name)

    def start(self) -> None:
        for container in self.containers:
            self._tasks.append(
                asyncio.create_task(container.run(), name=f"{self.name}/{container.name}")
            )
        self.changed()

    async def wait(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def delete(self, grace: float | None = None) -> None:
        """``kubectl delete pod`` (``grace=0``: ``--force --grace-period=0``)."""
        self.deleting.set()
        self.changed()
        period = self.grace_period if grace is None else grace
        await asyncio.gather(*(c.stop(period) for c in self.containers))
        await self.wait()
