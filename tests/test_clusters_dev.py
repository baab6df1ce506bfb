"""The repository's clusters_dev.toml is valid for every service that reads it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fairprice.api.settings import ApiSettings
from fairprice.common.settings import ServiceSettings, load_settings
from fairprice.converter.settings import ConverterSettings
from fairprice.crawler.settings import CrawlerSettings
from fairprice.operator.settings import OperatorSettings
from fairprice.simulator.settings import SimulatorSettings
from fairprice.storer.settings import StorerSettings

CONFIG = Path(__file__).resolve().parents[1] / "clusters_dev.toml"


@pytest.mark.parametrize(
    "settings_cls",
    [
        CrawlerSettings,
        ConverterSettings,
        StorerSettings,
        OperatorSettings,
        SimulatorSettings,
        ApiSettings,
    ],
)
def test_clusters_dev_toml_loads_for_every_service(
    settings_cls: type[ServiceSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("FAIRPRICE_")]:
        monkeypatch.delenv(name)
    settings = load_settings(settings_cls, CONFIG)
    assert settings.nats.servers == ["nats://127.0.0.1:4222"]
