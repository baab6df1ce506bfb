"""How a service starts and stops.

Every service's ``main`` is ``run_service(name, SettingsClass, run)``: load the settings (exit 2
naming the bad ones), configure logging, then ``asyncio.run(run(settings))``. ``run`` has the
shape ``run(settings, *, stop=None, ready=None)`` so tests drive a whole service in-process:
``stop`` is an ``asyncio.Event`` that ends it gracefully (SIGTERM and SIGINT set it when it is
not given), ``ready`` is set once the service is connected and caught up.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, NoReturn, TypeVar

from fairprice.common.errors import FairpriceError, FatalError, SettingsError, StoppedError
from fairprice.common.logs import configure_logging, get_logger
from fairprice.common.settings import ServiceSettings, load_settings

__all__ = ["die_with_parent", "install_signal_handlers", "run_service", "wait_or_stop"]

S = TypeVar("S", bound=ServiceSettings)
log = get_logger(__name__)


def die_with_parent() -> None:
    """In a child process (``preexec_fn``): get SIGTERM when the parent dies, however it dies.

    A runner killed with SIGKILL, or by a broken pipe, must not leave its servers and services
    running behind it. Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere a no-op.
    """
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


_SAME_SIGNAL_S = 1.0
"""A second signal this soon after the first is the same one delivered twice: a terminal's
Ctrl-C signals the whole foreground process group, and ``uv run`` forwards it to its child
as well, so ``make demo`` gets every Ctrl-C twice."""


def install_signal_handlers() -> asyncio.Event:
    """An event set by the first SIGTERM or SIGINT; a second one (not the first one delivered
    twice: ``_SAME_SIGNAL_S``) exits at once."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    first_at: list[float] = []

    def on_signal(signum: int) -> None:
        if stop.is_set():
            if first_at and loop.time() - first_at[0] < _SAME_SIGNAL_S:
                return
            log.warning("second signal, exiting now", signal=signal.Signals(signum).name)
            raise SystemExit(128 + signum)
        log.info("stopping", signal=signal.Signals(signum).name)
        first_at.append(loop.time())
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    return stop


async def wait_or_stop(stop: asyncio.Event, delay: float) -> bool:
    """Sleep ``delay`` seconds unless ``stop`` is set first; return whether it was."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=delay)
    except TimeoutError:
        return False
    return True


def run_service(
    name: str,
    settings_cls: type[S],
    run: Callable[[S], Coroutine[Any, Any, None]],
    overrides: Mapping[str, Any] | None = None,
) -> NoReturn:
    """The body of every ``fairprice-<service>`` entry point; ``overrides`` are settings given
    on its command line (``{"crawler": {"record": DIR}}``), above environment and file."""
    try:
        settings = load_settings(settings_cls, **(overrides or {}))
    except SettingsError as exc:
        for line in str(exc).splitlines():
            print(f"fairprice-{name}: {line}", file=sys.stderr)
        sys.exit(exc.exit_code)
    configure_logging(settings.log, service=name)
    try:
        asyncio.run(run(settings))
    except (FairpriceError, BaseExceptionGroup) as exc:
        error = _fairprice_error(exc)
        if error is None:
            raise
        if isinstance(error, StoppedError):
            log.info("stopped", reason=str(error))
            sys.exit(0)
        # One line, no traceback: what went wrong is the message (a busy port, a broker that
        # stayed unreachable for every allowed attempt); Kubernetes restarts us.
        log.error("fatal error", error=str(error), kind=type(error).__name__)
        sys.exit(error.exit_code if isinstance(error, FatalError) else 1)
    log.info("stopped")
    sys.exit(0)


def _fairprice_error(exc: BaseException) -> FairpriceError | None:
    """``exc``, or the first of a task group's errors, when it is one of ours."""
    if isinstance(exc, FairpriceError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _fairprice_error(inner)) is not None:
                return found
    return None
