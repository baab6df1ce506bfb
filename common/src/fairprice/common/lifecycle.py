"""How a service starts and stops.

Every service's ``main`` is ``run_service(name, SettingsClass, run)``: load the settings (exit 2
naming the bad ones), configure logging, then ``asyncio.run(run(settings))``. ``run`` has the
shape ``run(settings, *, stop=None, ready=None)`` so tests drive a whole service in-process:
``stop`` is an ``asyncio.Event`` that ends it gracefully (SIGTERM and SIGINT set it when it is
not given), ``ready`` is set once the service is connected and caught up.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, NoReturn, TypeVar

from fairprice.common.errors import FairpriceError, FatalError, SettingsError, StoppedError
from fairprice.common.logs import configure_logging, get_logger
from fairprice.common.settings import ServiceSettings, load_settings

__all__ = [
    "GC_THRESHOLDS",
    "die_with_parent",
    "install_signal_handlers",
    "run_service",
    "tune_gc",
    "wait_or_stop",
]

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
    tune_gc()
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


GC_THRESHOLDS = (50_000, 20, 100)
"""Collections per allocations: generation 0 after 50,000 (CPython's default is 700), 1 and 2
far less often. A service's hot path allocates a few short-lived objects per message (a
message, its headers, a decoded struct) that reference counting frees; with the defaults the
cyclic collector ran hundreds of times a second and took 5-6% of the crawler's, converter's
and storer's CPU in py-spy's native profiles under load (``bench/end_to_end.py``); with these,
under 1%. Cycles still get collected: later, in fewer, larger passes."""


def tune_gc() -> None:
    """Move what start-up made (modules, settings) out of the collector's sight for good
    (``gc.freeze``: it is never garbage) and collect by ``GC_THRESHOLDS``."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _fairprice_error(exc: BaseException) -> FairpriceError | None:
    """``exc``, or the first of a task group's errors, when it is one of ours."""
    if isinstance(exc, FairpriceError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _fairprice_error(inner)) is not None:
                return found
    return None
