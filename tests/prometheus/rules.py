"""prometheus/: the one source of fairprice's Prometheus rules and their promtool unit tests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

__all__ = ["PROMETHEUS", "RULES", "UNIT_TESTS", "alerts", "metric_names"]

PROMETHEUS = Path(__file__).resolve().parents[2] / "prometheus"
RULES = PROMETHEUS / "fairprice.rules.yaml"
UNIT_TESTS = sorted((PROMETHEUS / "tests").glob("*.test.yaml"))


def alerts() -> dict[str, dict[str, Any]]:
    """Every alerting rule of the rules file, by alert name."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def metric_names(expr: str) -> set[str]:
    """The fairprice metric names a PromQL expression reads."""
    return set(re.findall(r"\bfairprice_[a-z0-9_]+", expr))
