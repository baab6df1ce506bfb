"""The fairprice exception hierarchy.

    FairpriceError
    ├── TransientError      worth retrying: a broker or database that is down, a 5xx, a timeout
    │   ├── RateLimitedError    the exchange said 429/418: wait ``retry_after`` seconds first
    │   └── BrokerError         NATS or JetStream did not do it: down, timed out, refused
    │       └── NotFoundError       no such stream message, KV key, bucket or consumer
    ├── FatalError          retrying cannot help: exit non-zero and let Kubernetes restart us
    │   └── SettingsError       a bad or missing setting (exit code 2)
    ├── InvalidMessageError a message that can never be processed (poison: dead-letter it)
    └── StoppedError        told to stop before the work could begin (not a failure: exit 0)

Services catch ``TransientError`` at the edge of one unit of work (retry, nak with delay).
nats-py's own errors never reach a service: ``fairprice.common.broker_errors`` translates them
into ``BrokerError`` and ``NotFoundError`` at the bus. ``FatalError`` propagates to ``main``,
which logs it in one line and exits with its code; ``StoppedError`` (SIGTERM while NATS is
still unreachable) ends ``main`` with exit code 0.
"""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "FairpriceError",
    "FatalError",
    "InvalidMessageError",
    "NotFoundError",
    "RateLimitedError",
    "SettingsError",
    "StoppedError",
    "TransientError",
]


class FairpriceError(Exception):
    """Base of every error fairprice raises on purpose."""


class TransientError(FairpriceError):
    """A temporary failure: the same work may succeed if tried again later."""


class RateLimitedError(TransientError):
    """The remote side asked us to back off (HTTP 429 or 418) for ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float, status: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class BrokerError(TransientError):
    """NATS or JetStream did not do what was asked (unreachable, timed out, an API error)."""


class NotFoundError(BrokerError):
    """The broker holds no such thing: a stream's last message, a KV key, a bucket, a consumer
    (a ``BrokerError`` too: a caller that cares catches it first, others treat it as any)."""


class FatalError(FairpriceError):
    """A permanent failure: the process should stop with a non-zero exit code."""

    exit_code: int = 1


class SettingsError(FatalError):
    """One or more settings are invalid; the message names each of them."""

    exit_code = 2


class InvalidMessageError(FairpriceError):
    """A message that does not fit its schema: retrying it cannot help, the process goes on."""


class StoppedError(FairpriceError):
    """The service was told to stop while it was still waiting for something to start with."""
