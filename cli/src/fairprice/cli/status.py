"""`fairprice status`: is every service ready, and how far behind is each consumer?

Asks each service's ``/readyz`` and the JetStream API for every stream's size, how long it
holds messages at its current rate ("BOOKS holds 2.4 min": the longest InfluxDB outage it
survives), and every consumer's backlog, with a warning when a backlog passes half of its
stream's limit (retention.py); a crawler's ``/metrics`` add its sync progress (``synced 950 of
1000, ~4 s left``). Exits 0 when every service answered ready, 1 otherwise, so scripts and
`make` can wait on it.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from fairprice.cli.retention import WARN_SHARE, StreamHolding, format_duration
from fairprice.common.broker_errors import broker_errors
from fairprice.common.bus import connect_bus
from fairprice.common.errors import BrokerError
from fairprice.common.settings import ServiceSettings

__all__ = ["ServiceHealth", "collect_status", "run_status"]


@dataclass(frozen=True)
class ServiceHealth:
    name: str
    url: str
    ready: bool
    detail: str
    sync: str = ""
    """A crawler's progress, e.g. ``synced 950 of 1000, ~4 s left`` (empty for others)."""


async def _probe(client: httpx.AsyncClient, name: str, url: str) -> ServiceHealth:
    try:
        response = await client.get(url.rstrip("/") + "/readyz")
    except httpx.HTTPError as exc:
        return ServiceHealth(name, url, False, f"unreachable ({type(exc).__name__})")
    sync = await _sync_progress(client, url)
    if response.status_code == 200:
        return ServiceHealth(name, url, True, "ready", sync)
    try:
        waiting = ", ".join(response.json().get("waiting_for", []))
    except ValueError:
        waiting = response.text[:80]
    return ServiceHealth(name, url, False, f"not ready: {waiting}", sync)


async def _sync_progress(client: httpx.AsyncClient, url: str) -> str:
    """``synced N of M`` (and the estimated time left) from a crawler's metrics; ``""`` for a
    service that is not a crawler."""
    try:
        text = (await client.get(url.rstrip("/") + "/metrics")).text
        values = {
            sample.name: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name.startswith("fairprice_crawler_s")
        }
    except (httpx.HTTPError, ValueError):
        return ""
    owned = values.get("fairprice_crawler_symbols_owned")
    if owned is None:
        return ""
    synced = values.get("fairprice_crawler_symbols_synced", 0.0)
    text = f"synced {synced:.0f} of {owned:.0f}"
    eta = values.get("fairprice_crawler_sync_eta_seconds", math.nan)
    if synced < owned:
        text += ", time left unknown" if math.isnan(eta) else f", ~{eta:.0f} s left"
    return text


async def collect_status(
    settings: ServiceSettings, services: dict[str, str]
) -> tuple[list[ServiceHealth], Table, Table, list[str]]:
    """Readiness, the streams and consumers tables, and the warnings about backlogs."""
    async with httpx.AsyncClient(timeout=3.0) as client:
        health = await asyncio.gather(*(_probe(client, n, u) for n, u in services.items()))
    streams = Table(title="streams")
    for column in ("stream", "messages", "bytes", "first seq", "last seq", "holds"):
        streams.add_column(column, justify="left" if column == "stream" else "right")
    consumers = Table(title="consumers")
    for column in ("stream", "consumer", "pending", "ack pending", "redelivered"):
        left = column in ("stream", "consumer")
        consumers.add_column(column, justify="left" if left else "right")
    warnings: list[str] = []
    async with connect_bus(
        settings.nats.model_copy(update={"max_reconnect_attempts": 1}), name="fairprice-status"
    ) as bus:
        for info in sorted(await bus.jsm.streams_info(), key=lambda i: i.config.name or ""):
            name = info.config.name or ""
            if name.startswith("KV_"):
                continue
            state = info.state
            # The raw info: nats-py's StreamState leaves out the first and last timestamps.
            raw = await bus.nc.request(f"$JS.API.STREAM.INFO.{name}", b"", timeout=3.0)
            holding = StreamHolding.from_info(json.loads(raw.data))
            streams.add_row(
                name,
                f"{state.messages:,}",
                f"{state.bytes:,}",
                str(state.first_seq),
                str(state.last_seq),
                format_duration(holding.holds_s),
            )
            try:
                with broker_errors(f"consumers of {name}"):
                    infos = await bus.jsm.consumers_info(name)
            except BrokerError:
                continue
            for c in sorted(infos, key=lambda c: c.name):
                share = holding.backlog_share(c.num_pending or 0)
                if share >= WARN_SHARE:
                    warnings.append(
                        f"{c.name} on {name}: a backlog of {c.num_pending:,} messages is "
                        f"{share:.0%} of what {name} holds; at 100% the oldest are discarded "
                        "before they are read"
                    )
                consumers.add_row(
                    name,
                    c.name,
                    f"{c.num_pending or 0:,}",
                    f"{c.num_ack_pending or 0:,}",
                    f"{c.num_redelivered or 0:,}",
                )
    return list(health), streams, consumers, warnings


async def run_status(settings: ServiceSettings, services: dict[str, str]) -> int:
    health, streams, consumers, warnings = await collect_status(settings, services)
    table = Table(title="services")
    for column in ("service", "url", "state", "sync"):
        table.add_column(column)
    for h in health:
        state = f"[green]{h.detail}[/]" if h.ready else f"[red]{h.detail}[/]"
        table.add_row(h.name, h.url, state, h.sync)
    console = Console()
    for t in (table, streams, consumers):
        console.print(t)
    for warning in warnings:
        console.print(f"[yellow]warning: {warning}[/]")
    return 0 if all(h.ready for h in health) else 1
