"""The "Pipeline" dashboard's PromQL reads metrics that the services export.

`exposed_names` turns a /metrics scrape into the names PromQL sees (a histogram `x` is
`x_bucket`, `x_sum`, `x_count`; a counter `x` is `x_total`). The live check runs the
pipeline (simulator, crawler, converter, storer as real processes) and scrapes each service."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fairprice.cli.processes import Pipeline
from fairprice.common.testing import eventually

from .conftest import dashboards
from .test_dashboards import PIPELINE_METRICS, prometheus_metric_names

__all__ = ["exposed_names", "missing_metrics"]


def exposed_names(scrape: str) -> set[str]:
    """Every series name a scrape exposes, as PromQL spells them."""
    return {
        sample.name
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
    }


def missing_metrics(scrapes: list[str]) -> set[str]:
    """The dashboard's metric names that none of the scrapes exposes."""
    exposed = set().union(*(exposed_names(s) for s in scrapes))
    return prometheus_metric_names(dashboards()["pipeline"]) - exposed


def test_exposed_names_read_a_real_exposition() -> None:
    registry = CollectorRegistry()
    Counter("fairprice_storer_points_written", "points", registry=registry).inc()
    Gauge("fairprice_storer_consumer_lag_messages", "lag", registry=registry).set(3)
    Histogram("fairprice_storer_end_to_end_latency_seconds", "e2e", registry=registry).observe(0.1)
    names = exposed_names(generate_latest(registry).decode())
    assert {
        "fairprice_storer_points_written_total",
        "fairprice_storer_consumer_lag_messages",
        "fairprice_storer_end_to_end_latency_seconds_bucket",
    } <= names
    assert missing_metrics([generate_latest(registry).decode()]) == PIPELINE_METRICS - names


@pytest.mark.e2e
async def test_pipeline_dashboard_metrics_are_exported_by_the_services(tmp_path: Path) -> None:
    async with Pipeline(tmp_path, symbols=["BTCUSDT", "ETHUSDT"]) as pipeline:
        await pipeline.wait_ready(within=60)
        storer = pipeline.replicas("storer")[0]

        async def books_stored() -> bool:
            return 'fairprice_storer_points_written_total{measurement="orderbook"}' in (
                await pipeline.metrics(storer)
            )

        await eventually(books_stored, within=30, what="books stored")
        scrapes = [
            await pipeline.metrics(process)
            for process in pipeline.processes
            if process.name in ("crawler", "converter", "storer")
        ]
    assert not missing_metrics(scrapes)
