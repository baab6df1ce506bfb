"""A real Prometheus scrapes the running services (simulator, crawler, converter and storer as
real processes): every panel query of the "Pipeline" dashboard returns series with values, and
the shipped rules load, evaluate without error and read only metrics that the services export.

One pipeline and one Prometheus serve every test of this module; they only read.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fairprice.cli.processes import Pipeline
from fairprice.common.testing import PrometheusServer, eventually, run_prometheus
from fairprice.operator.metrics import OperatorMetrics

from .rules import RULES, alerts, metric_names

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

DASHBOARD = Path(__file__).resolve().parents[2] / "grafana" / "dashboards" / "pipeline.json"
# Grafana's $__rate_interval is at least four scrape intervals; Prometheus scrapes every second.
RATE_INTERVAL = "10s"


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of the Pipeline dashboard, as Prometheus gets it."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"].replace("$__rate_interval", RATE_INTERVAL))
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def prometheus(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Pipeline, PrometheusServer]]:
    workdir = tmp_path_factory.mktemp("live-prometheus")
    async with Pipeline(workdir / "pipeline", symbols=["BTCUSDT", "ETHUSDT"]) as pipeline:
        targets = {
            name: [f"127.0.0.1:{p.port}" for p in pipeline.replicas(name)]
            for name in ("crawler", "converter", "storer")
        }
        async with run_prometheus(
            workdir / "prometheus", targets=targets, rule_files=[RULES]
        ) as server:
            await pipeline.wait_ready(within=60)
            yield pipeline, server


async def _query(server: PrometheusServer, expr: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        answer = (await client.get("/api/v1/query", params={"query": expr})).json()
    assert answer["status"] == "success", (expr, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


async def test_every_pipeline_panel_query_returns_series(
    prometheus: tuple[Pipeline, PrometheusServer],
) -> None:
    _, server = prometheus
    queries = panel_queries()
    assert len(queries) >= 6
    empty: dict[str, str] = {}

    async def all_answer() -> bool:
        empty.clear()
        for title, expr in queries:
            series = await _query(server, expr)
            if not any(math.isfinite(float(s["value"][1])) for s in series):
                empty[expr] = title
        return not empty

    with contextlib.suppress(AssertionError):
        await eventually(all_answer, within=90, interval=1)
    assert empty == {}  # the queries that gave no value, and their panels


async def test_shipped_rules_evaluate_without_error(
    prometheus: tuple[Pipeline, PrometheusServer],
) -> None:
    _, server = prometheus
    rules: dict[str, dict[str, Any]] = {}

    async def all_evaluated() -> bool:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            groups = (await client.get("/api/v1/rules")).json()["data"]["groups"]
        rules.clear()
        rules.update({r["name"]: r for g in groups for r in g["rules"]})
        return bool(rules) and all(
            r.get("lastEvaluation", "").startswith("2") for r in rules.values()
        )

    await eventually(all_evaluated, within=30, interval=0.5, what="every rule evaluated")
    assert set(rules) == set(alerts())
    assert {name: r["lastError"] for name, r in rules.items() if r["health"] != "ok"} == {}


async def test_shipped_rules_read_only_exported_metrics(
    prometheus: tuple[Pipeline, PrometheusServer],
) -> None:
    """A rule on a misspelt metric would never fire; the operator is not part of the local
    pipeline, so its names come from its metrics registry."""
    _, server = prometheus
    registry = CollectorRegistry()
    OperatorMetrics(registry)
    exported = {
        sample.name
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }

    async def scraped_names() -> set[str]:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            names: list[str] = (await client.get("/api/v1/label/__name__/values")).json()["data"]
        return set(names)

    needed = set().union(*(metric_names(rule["expr"]) for rule in alerts().values()))
    missing: set[str] = set()

    async def all_scraped() -> bool:
        missing.clear()
        missing.update(needed - exported - await scraped_names())
        return not missing

    with contextlib.suppress(AssertionError):
        await eventually(all_scraped, within=30, interval=0.5)
    assert missing == set()
