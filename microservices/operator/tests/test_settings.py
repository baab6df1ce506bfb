"""The operator's settings: the [operator] table of clusters_dev.toml, and bad values named."""

from __future__ import annotations

import pytest

from fairprice.common.errors import SettingsError
from fairprice.common.settings import load_settings
from fairprice.operator.settings import OperatorSection, OperatorSettings

from .conftest import ROOT


def test_clusters_dev_toml_configures_the_operator() -> None:
    settings = load_settings(OperatorSettings, ROOT / "clusters_dev.toml")
    assert settings.operator.namespaces == []
    assert settings.operator.http.port == 8084
    assert settings.operator.api_server is None


def test_a_bad_setting_is_named_with_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAIRPRICE_OPERATOR__STALE_AFTER_S", "0")
    with pytest.raises(SettingsError, match="FAIRPRICE_OPERATOR__STALE_AFTER_S"):
        load_settings(OperatorSettings, ROOT / "clusters_dev.toml")


def test_namespaces_default_to_the_pods_own() -> None:
    section = OperatorSection()
    assert section.watched_namespaces({"POD_NAMESPACE": "fairprice"}) == ["fairprice"]
    assert section.watched_namespaces({}) == []  # a local run: every namespace


def test_namespaces_named_or_all() -> None:
    pod = {"POD_NAMESPACE": "fairprice"}
    assert OperatorSection(namespaces=["a", "b"]).watched_namespaces(pod) == ["a", "b"]
    assert OperatorSection(namespaces=["*"]).watched_namespaces(pod) == []
