"""Structured logging: JSON lines in containers, readable colour on a terminal.

structlog renders both our own events and the standard library's (nats-py, aiohttp, kopf), so
every line a service prints has the same shape: ``timestamp level service event key=value``.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

from fairprice.common.settings import LogSettings

__all__ = ["configure_logging", "get_logger"]

get_logger = structlog.stdlib.get_logger


def configure_logging(settings: LogSettings, *, service: str, stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging through one renderer chosen by ``settings.format``."""
    stream = stream or sys.stderr
    as_json = settings.format == "json" or (settings.format == "auto" and not stream.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service(service),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if as_json else _identity,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    # httpx logs every request at INFO: thousands of lines a minute from the storer's writes
    # and the crawler's snapshots. Their outcomes are in our own logs and metrics.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))


def _add_service(service: str) -> structlog.types.Processor:
    def add(
        _logger: object, _name: str, event: structlog.types.EventDict
    ) -> structlog.types.EventDict:
        event.setdefault("service", service)
        return event

    return add


def _identity(
    _logger: object, _name: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    return event
