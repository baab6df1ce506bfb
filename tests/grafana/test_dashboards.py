"""The dashboards follow Grafana's dashboard JSON model and reference provisioned datasources."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from fairprice.common.intervals import INTERVALS

from .conftest import GRAFANA, dashboards, provisioned_datasources

PANEL_TYPES = {"stat", "timeseries", "candlestick", "table", "bargauge", "row", "text"}
PIPELINE_METRICS = {
    "fairprice_crawler_books_published_total",
    "fairprice_crawler_resyncs_total",
    "fairprice_converter_books_total",
    "fairprice_storer_points_written_total",
    "fairprice_storer_consumer_lag_messages",
    "fairprice_storer_end_to_end_latency_seconds_bucket",
    "fairprice_storer_write_latency_seconds_bucket",
    "fairprice_storer_dead_letters_total",
}


def prometheus_metric_names(dashboard: dict[str, Any]) -> set[str]:
    """The fairprice metric names that a dashboard's PromQL expressions read."""
    return {
        name
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
        for name in re.findall(r"\bfairprice_[a-z0-9_]+", target["expr"])
    }


def _datasource_refs(dashboard: dict[str, Any]) -> list[dict[str, str]]:
    refs = [a["datasource"] for a in dashboard["annotations"]["list"]]
    # (a custom variable, like the candle interval, has no datasource)
    refs += [v["datasource"] for v in dashboard["templating"]["list"] if "datasource" in v]
    for panel in dashboard["panels"]:
        refs.append(panel["datasource"])
        refs += [t["datasource"] for t in panel.get("targets", [])]
    return refs


def test_dashboards_market_and_pipeline_exist_with_stable_uids() -> None:
    found = dashboards()
    assert {d["uid"] for d in found.values()} == {"fairprice-market", "fairprice-pipeline"}
    assert len({d["title"] for d in found.values()}) == len(found)


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_dashboard_is_structurally_valid(name: str) -> None:
    dashboard = dashboards()[name]
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert "id" not in dashboard or dashboard["id"] is None, "provisioned dashboards carry no id"
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", dashboard["uid"])
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), f"duplicate panel ids {ids}"
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        assert panel["type"] in PANEL_TYPES, panel["type"]
        grid = panel["gridPos"]
        assert grid["w"] >= 1 and grid["h"] >= 1 and grid["x"] >= 0 and grid["y"] >= 0
        assert grid["x"] + grid["w"] <= 24, f"panel {panel['id']} exceeds 24 columns"
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}  # fmt: skip
        assert not cells & mine, f"panel {panel['id']} overlaps another"
        cells |= mine
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert refs and len(refs) == len(set(refs)), f"panel {panel['id']} refIds {refs}"


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_every_datasource_uid_is_provisioned(name: str) -> None:
    provisioned = {d["uid"]: d["type"] for d in provisioned_datasources()}
    for ref in _datasource_refs(dashboards()[name]):
        if ref["type"] == "grafana":
            continue
        assert provisioned.get(ref["uid"]) == ref["type"], ref


def test_influxdb_datasource_takes_credentials_from_the_environment() -> None:
    (influx,) = [d for d in provisioned_datasources() if d["type"] == "influxdb"]
    assert influx["jsonData"]["version"] == "InfluxQL"
    assert influx["url"] == "${INFLUXDB_URL}"
    assert influx["user"] == "${INFLUXDB_USER}"
    assert influx["secureJsonData"]["password"] == "${INFLUXDB_PASSWORD}"
    assert influx["jsonData"]["dbName"] == "${INFLUXDB_DATABASE}"


def test_dashboard_provider_loads_the_dashboards_folder() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/fairprice.yaml").read_text())
    (only,) = provider["providers"]
    assert only["type"] == "file" and only["options"]["path"] == "${DASHBOARDS_DIR}"


def test_pipeline_dashboard_reads_the_expected_metrics() -> None:
    """The names the services must export; tests/prometheus/test_live_prometheus.py has a real
    Prometheus scrape the running services and run every panel query."""
    assert prometheus_metric_names(dashboards()["pipeline"]) == PIPELINE_METRICS


def test_market_candle_interval_variable_offers_every_interval() -> None:
    """The candle panel follows ``$interval``, whose options are the converter's intervals."""
    market = dashboards()["market"]
    (variable,) = [v for v in market["templating"]["list"] if v["name"] == "interval"]
    assert [o["value"] for o in variable["options"]] == list(INTERVALS)
    assert variable["query"].split(",") == list(INTERVALS)
    (candles,) = [p for p in market["panels"] if p["type"] == "candlestick"]
    assert "\"interval\" = '$interval'" in candles["targets"][0]["query"]
