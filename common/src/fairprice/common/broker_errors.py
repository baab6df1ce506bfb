"""nats-py's errors translated once, into the project's own: ``with broker_errors("what"):``.

The httpx pattern (``map_httpcore_exceptions``): every call into nats-py that callers above the
bus make is wrapped in this context manager, so nothing above it catches a nats-py type:

    nats.js.errors.NotFoundError (no such message, key, bucket)    -> NotFoundError
    nats.errors.Error, nats.js.errors.Error, TimeoutError, OSError -> BrokerError (transient)

(``NotFoundError`` is a ``BrokerError``: a caller that does not single it out treats it as any.)

This module and the bus modules of common (bus, publisher, consumer, tail, kv, membership)
are the only places that name nats-py's errors (a test checks it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import nats.errors
import nats.js.errors

from fairprice.common.errors import BrokerError, NotFoundError

__all__ = ["broker_errors"]

_BROKER_ERRORS = (nats.errors.Error, nats.js.errors.Error, TimeoutError, OSError)


@contextlib.contextmanager
def broker_errors(what: str) -> Iterator[None]:
    """Raise ``NotFoundError`` or ``BrokerError`` (whose message starts with ``what``) for
    what nats-py raises in the block."""
    try:
        yield
    except nats.js.errors.NotFoundError as exc:
        raise NotFoundError(f"{what}: not found") from exc
    except _BROKER_ERRORS as exc:
        raise BrokerError(f"{what}: {str(exc) or type(exc).__name__}") from exc
