"""The MarketFeed CRD: a structural schema that rejects bad input, printer columns, and example
manifests that validate against it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, get_args

import jsonschema
import msgspec
import pytest
import yaml

from fairprice.common.errors import InvalidMessageError
from fairprice.common.feeds import (
    STRATEGIES,
    AlertKind,
    AlertRule,
    FairPriceMethod,
    Feed,
    decode_feed,
)
from fairprice.common.intervals import INTERVALS
from fairprice.operator.feed_spec import InvalidSpecError, feed_from_spec

from .conftest import K8S, chart_crds, validate_strictly

CRD_FILE = K8S / "base/crd/marketfeeds.fairprice.io.yaml"
EXAMPLES = sorted((K8S / "examples").glob("*.yaml"))
# The CEL rules of the schema, each with its Python equivalent (applied after defaulting).
CEL_RULES = {
    "self.smaFastSeconds < self.smaSlowSeconds": lambda s: (
        s["smaFastSeconds"] < s["smaSlowSeconds"]
    ),
    "'1m' in self.candleIntervals": lambda s: "1m" in s["candleIntervals"],
    "self.indicators.interval in self.candleIntervals": lambda s: (
        s["indicators"]["interval"] in s["candleIntervals"]
    ),
    "self.indicators.macdFast < self.indicators.macdSlow": lambda s: (
        s["indicators"]["macdFast"] < s["indicators"]["macdSlow"]
    ),
    "self.indicators.rsiOversold < self.indicators.rsiOverbought": lambda s: (
        s["indicators"]["rsiOversold"] < s["indicators"]["rsiOverbought"]
    ),
}
# The CEL rules of each spec.alerts[] item, and the list's map key (unique names).
ALERT_CEL_RULES = {
    "self.kind in ['above', 'below'] ? has(self.level) : true": (
        lambda a: a["kind"] not in ("above", "below") or "level" in a
    ),
    "self.kind == 'move' ? has(self.percent) && has(self.windowSeconds) : true": (
        lambda a: a["kind"] != "move" or ("percent" in a and "windowSeconds" in a)
    ),
    "self.kind == 'stale' ? has(self.seconds) : true": (
        lambda a: a["kind"] != "stale" or "seconds" in a
    ),
}


def _crd() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    return crd


def _version_schema() -> dict[str, Any]:
    (version,) = _crd()["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    """The API server's view: unknown fields are errors (kubectl's strict field validation)
    unless a node preserves them. OpenAPI v3.0's boolean exclusiveMinimum is draft 4's."""
    node = copy.deepcopy(schema)
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        node["additionalProperties"] = False
    for key, child in node.get("properties", {}).items():
        node["properties"][key] = _closed(child)
    if "items" in node:
        node["items"] = _closed(node["items"])
    return node


def _defaulted(schema: dict[str, Any], value: Any) -> Any:
    if isinstance(value, dict):
        for key, child in schema.get("properties", {}).items():
            if key not in value and "default" in child:
                value[key] = copy.deepcopy(child["default"])
            if key in value:
                value[key] = _defaulted(child, value[key])
    return value


def validate_marketfeed(obj: dict[str, Any]) -> None:
    """Validate like the API server: schema, defaults, then the CEL rules."""
    schema = _version_schema()
    jsonschema.Draft4Validator(_closed(schema)).validate(obj)
    spec_schema = schema["properties"]["spec"]
    spec = _defaulted(spec_schema, copy.deepcopy(obj["spec"]))
    for rule in spec_schema.get("x-kubernetes-validations", []):
        if not CEL_RULES[rule["rule"]](spec):
            raise jsonschema.ValidationError(rule["message"])
    alerts = spec_schema["properties"]["alerts"]
    names = [alert["name"] for alert in spec["alerts"]]
    if len(names) != len(set(names)):
        raise jsonschema.ValidationError("alert names repeat (list-map-keys: name)")
    for alert in spec["alerts"]:
        for rule in alerts["items"]["x-kubernetes-validations"]:
            if not ALERT_CEL_RULES[rule["rule"]](alert):
                raise jsonschema.ValidationError(rule["message"])


def test_crd_validates_and_is_namespaced_with_a_status_subresource() -> None:
    crd = _crd()
    validate_strictly(crd)
    assert crd["metadata"]["name"] == "marketfeeds.fairprice.io"
    assert crd["spec"]["scope"] == "Namespaced"
    (version,) = crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Symbols", "Synced", "Price", "Signal", "Updated", "Age"]
    assert chart_crds() == [crd]


def test_every_cel_rule_is_checked_here() -> None:
    rules = _version_schema()["properties"]["spec"]["x-kubernetes-validations"]
    assert {r["rule"] for r in rules} == set(CEL_RULES)
    alerts = _version_schema()["properties"]["spec"]["properties"]["alerts"]
    assert {r["rule"] for r in alerts["items"]["x-kubernetes-validations"]} == set(ALERT_CEL_RULES)
    assert alerts["x-kubernetes-list-map-keys"] == ["name"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_manifests_validate_against_the_crd(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        assert (doc["apiVersion"], doc["kind"]) == ("fairprice.io/v1alpha1", "MarketFeed")
        validate_marketfeed(doc)


def test_examples_include_one_symbol_and_several() -> None:
    counts = {len(yaml.safe_load(p.read_text())["spec"]["symbols"]) for p in EXAMPLES}
    assert 1 in counts and max(counts) > 1
    assert (K8S / "examples/btcusdt.yaml").exists()


GOOD = {
    "apiVersion": "fairprice.io/v1alpha1",
    "kind": "MarketFeed",
    "metadata": {"name": "x"},
    "spec": {"symbols": ["BTCUSDT"]},
}


@pytest.mark.parametrize(
    "spec",
    [
        {"symbols": ["btcusdt"]},
        {"symbols": ["BTC-USDT"]},
        {"symbols": []},
        {"symbols": ["BTCUSDT"], "depth": 0},
        {"symbols": ["BTCUSDT"], "depth": 101},
        {"symbols": ["BTCUSDT"], "method": "vwap"},
        {"symbols": ["BTCUSDT"], "notional": 0},
        {"symbols": ["BTCUSDT"], "smaFastSeconds": 60, "smaSlowSeconds": 20},
        {"symbols": ["BTCUSDT"], "smaFastSeconds": 90},
        {"symbols": ["BTCUSDT"], "candleIntervals": ["5m"]},
        {"symbols": ["BTCUSDT"], "candleIntervals": ["1m", "2m"]},
        {"symbols": ["BTCUSDT"], "indicators": {"interval": "4h"}, "candleIntervals": ["1m"]},
        {"symbols": ["BTCUSDT"], "indicators": {"macdFast": 30}},
        {"symbols": ["BTCUSDT"], "indicators": {"rsiPeriod": 1}},
        {"symbols": ["BTCUSDT"], "indicators": {"rsiOversold": 80}},
        {"symbols": ["BTCUSDT"], "indicators": {"rsi": 14}},
        {"symbols": ["BTCUSDT"], "strategies": ["golden_cross"]},
        {"symbols": ["BTCUSDT"], "symbol": "ETHUSDT"},
        {"symbols": ["BTCUSDT"], "enabled": "yes"},
        {"exchange": "Binance!", "symbols": ["BTCUSDT"]},
        {},
        {"symbols": ["BTCUSDT"], "alerts": [{"name": "x", "kind": "above"}]},
        {"symbols": ["BTCUSDT"], "alerts": [{"name": "x", "kind": "move", "percent": 1}]},
        {"symbols": ["BTCUSDT"], "alerts": [{"name": "x", "kind": "cross", "level": 1}]},
        {"symbols": ["BTCUSDT"], "alerts": [{"name": "X y", "kind": "signal"}]},
        {"symbols": ["BTCUSDT"], "alerts": [{"kind": "signal"}]},
        {"symbols": ["BTCUSDT"], "alerts": [{"name": "x", "kind": "signal", "action": "HOLD"}]},
        {"symbols": ["BTCUSDT"], "alerts": [{"name": "x", "kind": "stale"}]},
        {"symbols": ["BTCUSDT"], "alerts": [{"name": "x", "kind": "stale", "seconds": 0}]},
        {"symbols": ["BTCUSDT"], "alerts": [{"name": "x", "kind": "signal", "strategy": "rsi"}]},
        {"symbols": ["BTCUSDT"], "alerts": [{"name": "x", "kind": "below", "level": 1, "lvl": 2}]},
        {
            "symbols": ["BTCUSDT"],
            "alerts": [{"name": "x", "kind": "signal"}, {"name": "x", "kind": "below", "level": 1}],
        },
    ],
)
def test_bad_marketfeeds_are_rejected(spec: dict[str, Any]) -> None:
    validate_marketfeed(GOOD)
    with pytest.raises(jsonschema.ValidationError):
        validate_marketfeed({**GOOD, "spec": spec})


# CRD spec field -> fairprice.common.feeds.Feed field (the operator's translation).
SPEC_TO_FEED = {
    "exchange": "exchange",
    "symbols": "symbols",
    "depth": "depth",
    "method": "method",
    "notional": "notional",
    "smaFastSeconds": "sma_fast_s",
    "smaSlowSeconds": "sma_slow_s",
    "candleIntervals": "candle_intervals",
    "indicators": "indicators",
    "strategies": "strategies",
    "enabled": "enabled",
    "alerts": "alerts",
}


def test_crd_spec_matches_the_feed_contract_and_its_defaults() -> None:
    spec = _version_schema()["properties"]["spec"]["properties"]
    assert set(spec) == set(SPEC_TO_FEED)
    fields = {f.name: f for f in msgspec.structs.fields(Feed)}
    assert set(SPEC_TO_FEED.values()) == set(fields)
    for crd_name, feed_name in SPEC_TO_FEED.items():
        field = fields[feed_name]
        default = field.default
        if default is msgspec.NODEFAULT and field.default_factory is not msgspec.NODEFAULT:
            default = msgspec.to_builtins(field.default_factory())
        if default is not msgspec.NODEFAULT:
            expected = msgspec.to_builtins(default)
            if isinstance(expected, tuple):  # a tuple default is a JSON array
                expected = list(expected)
            elif feed_name == "indicators":
                expected = _camel_indicators(expected)
            assert _defaulted(spec[crd_name], spec[crd_name]["default"]) == expected, crd_name
    assert spec["method"]["enum"] == list(get_args(FairPriceMethod))
    assert spec["candleIntervals"]["items"]["enum"] == list(INTERVALS)
    assert spec["strategies"]["items"]["enum"] == list(STRATEGIES)
    alert = spec["alerts"]["items"]["properties"]
    assert alert["kind"]["enum"] == list(get_args(AlertKind))
    rule_fields = {f.encode_name for f in msgspec.structs.fields(AlertRule)}
    assert set(alert) == rule_fields


def _camel_indicators(indicators: dict[str, Any]) -> dict[str, Any]:
    names = {"bollinger_sd": "bollingerStdDevs"}
    return {
        names.get(k, "".join(w.capitalize() if i else w for i, w in enumerate(k.split("_")))): v
        for k, v in indicators.items()
    }


def test_a_valid_alert_list_validates_and_decodes_as_the_feeds_rules() -> None:
    alerts = [
        {"name": "btc-above-100k", "kind": "above", "level": 100000, "severity": "critical"},
        {"name": "fast-move", "kind": "move", "percent": 1, "windowSeconds": 60},
        {"name": "buy", "kind": "signal", "action": "BUY"},
        {"name": "macd", "kind": "signal", "strategy": "macd_cross"},
        {"name": "quiet", "kind": "stale", "seconds": 30},
    ]
    validate_marketfeed({**GOOD, "spec": {"symbols": ["BTCUSDT"], "alerts": alerts}})
    spec = _defaulted(
        _version_schema()["properties"]["spec"], {"symbols": ["BTCUSDT"], "alerts": alerts}
    )
    feed = feed_from_spec(spec)
    assert decode_feed(msgspec.json.encode(feed)) == feed
    assert [(r.name, r.kind, r.severity) for r in feed.alerts] == [
        ("btc-above-100k", "above", "critical"),
        ("fast-move", "move", "warning"),
        ("buy", "signal", "warning"),
        ("macd", "signal", "warning"),
        ("quiet", "stale", "warning"),
    ]
    assert feed.alerts[1].window_seconds == 60
    assert (feed.alerts[3].strategy, feed.alerts[4].seconds) == ("macd_cross", 30)


@pytest.mark.parametrize(
    "alert",
    [
        {"name": "x", "kind": "above"},
        {"name": "x", "kind": "move", "windowSeconds": 60},
        {"name": "x", "kind": "stale"},
    ],
)
def test_a_rule_without_what_its_kind_needs_is_no_feed(alert: dict[str, Any]) -> None:
    """The CRD's CEL rules, again where a feed is decoded (a hand-written KV entry, an old
    API server without CEL): the operator refuses the spec, readers of KV ignore the entry."""
    spec = {"symbols": ["BTCUSDT"], "alerts": [alert]}
    with pytest.raises(InvalidSpecError, match="alerts need"):
        feed_from_spec(spec)
    with pytest.raises(InvalidMessageError, match="alerts need"):
        decode_feed(msgspec.json.encode(spec))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_feeds_decode_as_feed_entries(path: Path) -> None:
    """What the operator writes to the feeds bucket for each example is a valid Feed."""
    spec = _defaulted(
        _version_schema()["properties"]["spec"], yaml.safe_load(path.read_text())["spec"]
    )
    feed = feed_from_spec(spec)
    assert decode_feed(msgspec.json.encode(feed)) == feed
    assert feed.symbols == spec["symbols"]


def test_the_marketfeed_of_the_alerts_docs_validates() -> None:
    """docs/alerts.md's example of a MarketFeed with alerts is one the CRD accepts."""
    docs = (K8S.parent / "docs" / "alerts.md").read_text()
    example = yaml.safe_load(docs.split("```yaml\n", 1)[1].split("```", 1)[0])
    validate_marketfeed(example)
    assert {a["kind"] for a in example["spec"]["alerts"]} == set(get_args(AlertKind))
