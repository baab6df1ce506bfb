"""The shipped Prometheus rules pass `promtool check rules` and their `promtool test rules`
unit tests, and every alert has a unit test in which it fires."""

from __future__ import annotations

import re
import subprocess

import yaml

from fairprice.common.testing import find_binary

from .rules import PROMETHEUS, RULES, UNIT_TESTS, alerts


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_binary("promtool"), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=PROMETHEUS / "tests",
    )


def test_rules_pass_promtool_check() -> None:
    checked = _promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in checked.stdout


def test_rules_pass_their_promtool_unit_tests() -> None:
    tested = _promtool("test", "rules", *(str(path) for path in UNIT_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_fires_in_a_unit_test_and_has_a_severity() -> None:
    fired: set[str] = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    rules = alerts()
    assert set(rules) - fired == set()
    assert {rule["labels"]["severity"] for rule in rules.values()} <= {"warning", "critical"}


def test_docs_list_every_alert_and_each_alert_links_its_entry() -> None:
    docs = (PROMETHEUS.parent / "docs" / "alerts.md").read_text()
    listed = set(re.findall(r'<a id="[a-z]+"></a>`(Fairprice[A-Za-z]+)`', docs))
    rules = alerts()
    assert listed == set(rules)
    for name, rule in rules.items():
        anchor = f"docs/alerts.md#{name.lower()}"
        assert anchor in rule["annotations"]["description"], name
        assert f'<a id="{name.lower()}"></a>`{name}`' in docs
