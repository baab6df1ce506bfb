"""The one retry policy: capped exponential delays with full jitter, retried in place."""

from __future__ import annotations

import asyncio

import pytest

from fairprice.common.errors import StoppedError, TransientError
from fairprice.common.retry import Backoff


def test_backoff_delays_stay_under_the_capped_exponential() -> None:
    policy = Backoff(0.1, 1.0)
    for attempt, bound in enumerate([0.1, 0.2, 0.4, 0.8, 1.0, 1.0]):
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= bound for d in delays)
        assert max(delays) > bound / 2  # jittered over the whole range, not a constant


async def test_retry_until_the_call_succeeds_telling_each_failure() -> None:
    calls: list[int] = []
    told: list[tuple[str, int]] = []

    async def flaky() -> str:
        calls.append(len(calls))
        if len(calls) < 3:
            raise TransientError(f"try {len(calls)}")
        return "done"

    async def on_retry(exc: BaseException, attempt: int, delay: float) -> None:
        assert 0 <= delay <= 0.01 * 2**attempt
        told.append((str(exc), attempt))

    result = await Backoff(0.01, 0.05).retry(flaky, stop=None, what="x", on_retry=on_retry)
    assert result == "done"
    assert told == [("try 1", 0), ("try 2", 1)]


async def test_retry_gives_up_after_its_attempts_with_the_last_error() -> None:
    async def failing() -> None:
        raise TransientError("down")

    with pytest.raises(TransientError, match="down"):
        await Backoff(0.001, 0.001).retry(failing, stop=None, what="x", attempts=3)


async def test_retry_does_not_retry_what_is_not_transient() -> None:
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bug")

    with pytest.raises(ValueError):
        await Backoff(0.001, 0.001).retry(broken, stop=None, what="x")
    assert calls == 1


async def test_retry_stops_when_told_to_while_waiting() -> None:
    stop = asyncio.Event()

    async def failing() -> None:
        stop.set()  # as SIGTERM would, during the call
        raise TransientError("down")

    with pytest.raises(StoppedError, match="stopped before the broker was reachable"):
        await Backoff(60.0, 60.0).retry(failing, stop=stop, what="the broker was reachable")
