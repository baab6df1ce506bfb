"""Every setting the chart or an overlay renders into a service's config file or environment is
loaded by that service's own settings class, as the container would load it: the config file
at the path FAIRPRICE_CONFIG names (the pod's ConfigMap volume, as the harness mounts it), and
the environment as the kubelet builds it (Secret and ConfigMap keys, fieldRefs resolved)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fairprice.common.errors import SettingsError
from fairprice.common.settings import ServiceSettings
from fairprice.crawler.settings import CrawlerSettings
from fairprice.simulator.settings import SimulatorSettings

from .conftest import RELEASE, VALUE_SETS, kustomize, render_chart
from .harness.images import repository
from .running import SETTINGS, load_pod_settings

SOURCES = [f"values:{name}" for name in VALUE_SETS] + ["kustomize:overlays/dev"]
SOURCES += ["kustomize:overlays/dev-offline"]


def _docs(source: str) -> list[dict[str, Any]]:
    kind, name = source.split(":", 1)
    if kind == "kustomize":
        return kustomize(name)
    if name == "external":
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "influx-credentials"},
            "stringData": {
                "username": "u",
                "password": "p",
                "storer-password": "s",
                "reader-password": "r",
            },
        }
        return [*render_chart(VALUE_SETS[name]), secret]  # the user's own Secret
    return render_chart(VALUE_SETS[name])


def _services(docs: list[dict[str, Any]]) -> list[str]:
    return [
        d["metadata"]["name"]
        for d in docs
        if d["kind"] == "Deployment"
        and repository(d["spec"]["template"]["spec"]["containers"][0]["image"]) in SETTINGS
    ]


@pytest.mark.parametrize("source", SOURCES)
def test_every_service_loads_its_rendered_config_and_env_with_its_own_settings(
    source: str, tmp_path: Path
) -> None:
    docs = _docs(source)
    services = _services(docs)
    assert len(services) >= 3
    for workload in services:
        cls, settings = load_pod_settings(docs, workload, tmp_path / workload)
        assert isinstance(settings, cls)
        assert settings.log.format == "json", workload
        if isinstance(settings, SimulatorSettings):
            continue  # the simulator uses no NATS (the network policies rely on it)
        assert settings.nats.servers and "127.0.0.1" not in settings.nats.servers[0], workload
        assert settings.nats.user == workload.removeprefix(f"{RELEASE}-"), workload
        assert settings.nats.password is not None, workload


def test_simulator_listens_on_the_api_port_and_serves_any_symbol(tmp_path: Path) -> None:
    values = {"simulator": {"enabled": True, "apiPort": 9443}}
    docs = render_chart(values)
    _, settings = load_pod_settings(docs, "fairprice-simulator", tmp_path / "chart")
    assert isinstance(settings, SimulatorSettings)
    assert settings.simulator.port == 9443 and settings.simulator.market.any_symbol
    _, crawler = load_pod_settings(docs, "fairprice-crawler", tmp_path / "crawler")
    assert isinstance(crawler, CrawlerSettings)
    assert crawler.crawler.rest_url == "http://fairprice-simulator:9443"
    docs = kustomize("overlays/dev-offline")
    _, settings = load_pod_settings(docs, "fairprice-simulator", tmp_path / "kustomize")
    assert isinstance(settings, SimulatorSettings)
    assert settings.simulator.port == 8090 and settings.simulator.market.any_symbol


@pytest.mark.parametrize(
    ("service", "section"),
    [
        ("crawler", {"symbls": ["BTCUSDT"]}),
        ("converter", {"sma_fast": 5}),
        ("storer", {"batch": {"max_pionts": 10}}),
        ("operator", {"namespace": ["x"]}),
        ("simulator", {"market": {"seeed": 3}}),
        ("api", {"stream": {"windoww": 10}}),
    ],
)
def test_a_misspelt_key_in_a_service_section_fails_that_service(
    service: str, section: dict[str, Any], tmp_path: Path
) -> None:
    """The chart's schema lets a service's settings through as free-form TOML; the service's
    own settings class names the bad key when the pod starts (the base class would not)."""
    values: dict[str, Any] = {"simulator": {"enabled": True}}
    values.setdefault(service, {})["settings"] = section
    docs = render_chart(values)
    bad_key = next(iter(section))
    with pytest.raises(SettingsError, match=bad_key):
        load_pod_settings(docs, f"fairprice-{service}", tmp_path / "own")
    load_pod_settings(docs, f"fairprice-{service}", tmp_path / "base", ServiceSettings)
