"""Every chart value is documented one by one (`## @param <path> <description>`, bitnami's
convention), and every documented path exists."""

from __future__ import annotations

import re
from typing import Any

import yaml

from .conftest import CHART


def _params() -> dict[str, str]:
    text = (CHART / "values.yaml").read_text()
    return dict(re.findall(r"^## @param (\S+) (.+)$", text, re.M))


def _documented_or_leaves(
    values: dict[str, Any], documented: set[str], prefix: str = ""
) -> set[str]:
    """Paths of the values: a documented map counts as one value (resources, settings...)."""
    paths = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in documented:
            paths |= _documented_or_leaves(value, documented, f"{path}.")
        else:
            paths.add(path)
    return paths


def test_every_value_has_a_param_line_and_every_param_a_value() -> None:
    params = _params()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    paths = _documented_or_leaves(values, set(params))
    assert sorted(paths - set(params)) == [], "values without ## @param"
    assert sorted(set(params) - paths) == [], "## @param for values that do not exist"
    assert all(len(description) > 10 for description in params.values())
