"""The operator's side of the MarketFeed contract: every example manifest, as the API server
stores it (schema-checked, defaulted), is a feed the operator accepts; and the status the
operator writes fits the CRD's status schema whole (nothing pruned) and fills every printer
column."""

from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from fairprice.common.feeds import Feed
from fairprice.common.messages import Latest
from fairprice.crawler.adapters import EXCHANGES
from fairprice.operator.feed_spec import feed_from_spec
from fairprice.operator.handlers import VERSION
from fairprice.operator.status import feed_status, symbol_states

from .conftest import EXAMPLES, spec_schema, with_defaults


def version_of(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = (v for v in crd["spec"]["versions"] if v["name"] == VERSION)
    found: dict[str, Any] = version
    return found


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as the API server applies it: a field it does not declare is pruned (here:
    an error), unless its node preserves unknown fields."""
    node = copy.deepcopy(schema)
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        node["additionalProperties"] = False
    for name, child in node.get("properties", {}).items():
        node["properties"][name] = closed(child)
    if "items" in node:
        node["items"] = closed(node["items"])
    return node


def test_examples_exist() -> None:
    assert [path.name for path in EXAMPLES if path.name == "btcusdt.yaml"]
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_example_manifest_is_valid_and_a_feed_the_operator_accepts(
    path: Path, crd: dict[str, Any]
) -> None:
    schema = version_of(crd)["schema"]["openAPIV3Schema"]
    for doc in (doc for doc in yaml.safe_load_all(path.read_text()) if doc):
        jsonschema.Draft4Validator(closed(schema)).validate(doc)
        spec = with_defaults(spec_schema(crd), doc["spec"])
        feed = feed_from_spec(spec)
        assert feed.symbols == doc["spec"]["symbols"]
        assert feed.exchange == spec["exchange"] and feed.method == spec["method"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_example_names_an_exchange_the_crawler_crawls(path: Path, crd: dict[str, Any]) -> None:
    """A crawler takes the feeds of its own adapter's exchange only (``binance``, ``sim``): any
    other name would never be crawled."""
    for doc in (doc for doc in yaml.safe_load_all(path.read_text()) if doc):
        assert with_defaults(spec_schema(crd), doc["spec"])["exchange"] in EXCHANGES


def full_status() -> dict[str, Any]:
    """A status with every field the operator can write."""
    now = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
    now_ms = int(now.timestamp() * 1000)
    feed = Feed(symbols=["BTCUSDT", "ETHUSDT"])
    latest = {
        "BTCUSDT": Latest(
            exchange="binance",
            symbol="BTCUSDT",
            update_id=1,
            event_time_ms=now_ms,
            method="microprice",
            price=65000.5,
            sma_fast=65001.0,
            sma_slow=64999.0,
            signal="BUY",
            signal_time_ms=now_ms - 1000,
        ),
        "ETHUSDT": None,
    }
    states = symbol_states(feed, latest, now=now, stale_after_s=30)
    return feed_status(feed, latest, states, now=now, generation=2)


def test_the_status_the_operator_writes_fits_the_crd_whole(crd: dict[str, Any]) -> None:
    status_schema = version_of(crd)["schema"]["openAPIV3Schema"]["properties"]["status"]
    # Closed at every level, the top included: a key the CRD does not declare would be pruned
    # from a real object (the top level preserves unknown keys only for kopf's own).
    strict = closed({**status_schema, "x-kubernetes-preserve-unknown-fields": False})
    jsonschema.Draft4Validator(strict, format_checker=jsonschema.FormatChecker()).validate(
        full_status()
    )


def test_every_printer_column_shows_a_value_from_the_status(crd: dict[str, Any]) -> None:
    obj = {"metadata": {"creationTimestamp": "2026-03-01T11:00:00Z"}, "status": full_status()}
    for column in version_of(crd)["additionalPrinterColumns"]:
        value: Any = obj
        for part in column["jsonPath"].lstrip(".").split("."):
            value = value.get(part) if isinstance(value, dict) else None
        assert value is not None, f"column {column['name']} ({column['jsonPath']}) is empty"
