"""Waiting for a condition in tests: a poll with a deadline, never a bare sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["eventually"]


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    within: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> None:
    """Return as soon as ``predicate()`` is true; ``AssertionError`` after ``within`` seconds.

    ``predicate`` may be a plain function or a coroutine function (e.g. a query).
    """
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {within:g}s")
        await asyncio.sleep(interval)
