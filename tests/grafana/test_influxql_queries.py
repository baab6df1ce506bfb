"""Every InfluxQL query of the dashboards (panels, variables, annotations) runs against a real
influxd holding the schema's measurements, with Grafana's macros substituted the way Grafana
does, and returns non-empty series with the columns the panel uses."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fairprice.common.intervals import INTERVALS
from fairprice.common.testing import InfluxServer

from .conftest import DATABASE, EXCHANGE, SYMBOLS, Window, dashboards

INFLUX_UID = "fairprice-influxdb"
DATASOURCE_MIN_INTERVAL_MS = 1000  # provisioning: jsonData.timeInterval = 1s
# Grafana's rangeutil.roundInterval: the raw interval rounded to a "nice" one.
_NICE_MS = [
    (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1_500, 1_000),
    (3_500, 2_000), (7_500, 5_000), (12_500, 10_000), (17_500, 15_000), (25_000, 20_000),
    (45_000, 30_000), (90_000, 60_000), (210_000, 120_000), (450_000, 300_000),
    (750_000, 600_000), (1_050_000, 900_000), (1_500_000, 1_200_000), (2_700_000, 1_800_000),
]  # fmt: skip
_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def _round_interval(ms: float) -> int:
    return next((nice for limit, nice in _NICE_MS if ms <= limit), 3_600_000)


def _parse_duration_ms(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text).groups()  # type: ignore[union-attr]
    return int(number) * _UNITS_MS[unit]


def _format_interval(ms: int) -> str:
    for unit in ("d", "h", "m", "s"):
        if ms % _UNITS_MS[unit] == 0:
            return f"{ms // _UNITS_MS[unit]}{unit}"
    return f"{ms}ms"


def interval_ms(window: Window, max_data_points: int, min_interval: str | None) -> int:
    """Grafana's $__interval: range / max data points, rounded, not below the minimum interval
    (the panel's "interval", else the datasource's timeInterval)."""
    low = _parse_duration_ms(min_interval) if min_interval else DATASOURCE_MIN_INTERVAL_MS
    return max(_round_interval((window.end_ms - window.start_ms) / max_data_points), low)


def substitute(query: str, window: Window, variables: dict[str, str], step_ms: int) -> str:
    """Replace Grafana's macros and single-value variables as the InfluxDB datasource does."""
    text = query.replace(
        "$timeFilter", f"time >= {window.start_ms}ms and time <= {window.end_ms}ms"
    )
    text = text.replace("$__interval_ms", str(step_ms))
    text = text.replace("$__interval", _format_interval(step_ms))
    for name in sorted(variables, key=len, reverse=True):
        text = text.replace(f"${{{name}}}", variables[name]).replace(f"${name}", variables[name])
    assert not re.search(r"\$\{?[A-Za-z_]", text), f"unsubstituted macro in {text}"
    return text


def selected_columns(query: str) -> list[str]:
    """The columns a SELECT returns besides time: each alias, else the bare field name."""
    select = re.match(r"SELECT (.*?) FROM ", query, re.S)
    assert select, query
    columns = []
    for part in re.split(r",\s*(?![^()]*\))", select.group(1)):
        alias = re.search(r'AS "([^"]+)"\s*$', part)
        columns.append(alias.group(1) if alias else part.strip().strip('"'))
    return columns


def group_by_tags(query: str) -> list[str]:
    group = re.search(r"GROUP BY (.*?)(?: fill\(|$)", query)
    return re.findall(r'"(\w+)"', group.group(1)) if group else []


def influx_queries() -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(dashboard, where, query, panel) for every InfluxQL query of every dashboard."""
    for name, dashboard in dashboards().items():
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                if target["datasource"]["uid"] == INFLUX_UID:
                    yield name, f"panel {panel['id']} {target['refId']}", target["query"], panel
        for annotation in dashboard["annotations"]["list"]:
            if annotation["datasource"].get("uid") == INFLUX_UID:
                mapping = {k: annotation[k] for k in ("textColumn", "tagsColumn", "titleColumn")}
                # The field mapping must name columns of the query, like a panel's fields.
                yield (
                    name,
                    f"annotation {annotation['name']}",
                    annotation["target"]["query"],
                    {"options": {"fields": mapping}},
                )


async def _run(client: httpx.AsyncClient, query: str) -> list[dict[str, Any]]:
    response = await client.get("/query", params={"db": DATABASE, "q": query, "epoch": "ms"})
    response.raise_for_status()
    result = response.json()["results"][0]
    assert "error" not in result, f"{query}\n-> {result['error']}"
    return list(result.get("series", []))


def _problems(series: list[dict[str, Any]], query: str, panel: dict[str, Any]) -> list[str]:
    if not series:
        return ["no series"]
    found = []
    wanted = selected_columns(query)
    for one in series:
        columns = one["columns"]
        missing = [c for c in ["time", *wanted] if c not in columns]
        if missing:
            found.append(f"columns {columns} lack {missing}")
            continue
        for column in wanted:
            index = columns.index(column)
            if all(row[index] is None for row in one["values"]):
                found.append(f"column {column} is all null")
        tags = one.get("tags", {})
        found += [f"no tag {t}" for t in group_by_tags(query) if t not in tags]
    used = panel.get("options", {}).get("fields", {})
    if isinstance(used, dict):  # candlestick OHLC fields, annotation mappings: query columns
        found += [f"panel uses missing field {f}" for f in used.values() if f not in wanted]
    return found


@pytest.mark.parametrize("max_data_points", [1000, 60])
async def test_every_influxql_query_returns_the_panel_columns(
    market_influxd: tuple[InfluxServer, Window], max_data_points: int
) -> None:
    server, window = market_influxd
    queries = list(influx_queries())
    assert len(queries) >= 12, "the dashboards lost their InfluxQL queries"
    failures = []
    async with httpx.AsyncClient(base_url=server.admin_url, timeout=30) as client:
        for symbol, interval in itertools.product(SYMBOLS, INTERVALS):
            variables = {"exchange": EXCHANGE, "symbol": symbol, "interval": interval}
            for dashboard, where, raw, panel in queries:
                step = interval_ms(window, max_data_points, panel.get("interval"))
                query = substitute(raw, window, variables, step)
                for problem in _problems(await _run(client, query), query, panel):
                    failures.append(f"{dashboard} {where} ({symbol}): {problem}\n    {query}")
    assert not failures, "\n".join(failures)


async def test_queries_are_filtered_by_the_selected_symbol(
    market_influxd: tuple[InfluxServer, Window],
) -> None:
    """A symbol with no data gives no series: the panels really follow the variables."""
    server, window = market_influxd
    async with httpx.AsyncClient(base_url=server.admin_url, timeout=30) as client:
        for _, where, raw, panel in influx_queries():
            step = interval_ms(window, 1000, panel.get("interval"))
            unknown = {"exchange": EXCHANGE, "symbol": "NOPEUSDT", "interval": "1m"}
            query = substitute(raw, window, unknown, step)
            assert await _run(client, query) == [], where


async def test_variable_queries_list_the_stored_exchanges_and_symbols(
    market_influxd: tuple[InfluxServer, Window],
) -> None:
    server, window = market_influxd
    variables = {v["name"]: v for d in dashboards().values() for v in d["templating"]["list"]}
    assert {"exchange", "symbol"} <= set(variables)
    async with httpx.AsyncClient(base_url=server.admin_url, timeout=30) as client:
        exchanges = await _run(client, substitute(variables["exchange"]["query"], window, {}, 1000))
        symbols = await _run(
            client, substitute(variables["symbol"]["query"], window, {"exchange": EXCHANGE}, 1000)
        )
    assert [row[1] for row in exchanges[0]["values"]] == [EXCHANGE]
    assert sorted(row[1] for row in symbols[0]["values"]) == sorted(SYMBOLS)


def test_interval_follows_grafana_rounding() -> None:
    window = Window(0, 600_000)
    assert interval_ms(window, 1000, None) == 1000  # 600 ms -> 500 ms, raised to timeInterval 1s
    assert interval_ms(window, 60, None) == 10_000
    assert interval_ms(window, 1000, "1m") == 60_000
    assert _format_interval(60_000) == "1m" and _format_interval(500) == "500ms"
