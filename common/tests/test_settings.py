from __future__ import annotations

import os
from pathlib import Path

import pytest

from fairprice.common.errors import SettingsError
from fairprice.common.settings import (
    CONFIG_ENV,
    HttpSettings,
    Section,
    ServiceSettings,
    config_path,
    load_settings,
)


class _DemoSection(Section):
    depth: int = 20
    symbols: list[str] = ["BTCUSDT"]
    http: HttpSettings = HttpSettings(port=8081)


class _DemoSettings(ServiceSettings):
    crawler: _DemoSection = _DemoSection()


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("FAIRPRICE_"):
            monkeypatch.delenv(name)
    path = tmp_path / "config.toml"
    path.write_text(
        '[nats]\nservers = ["nats://10.0.0.1:4222"]\n'
        '[crawler]\ndepth = 50\nsymbols = ["ETHUSDT", "BNBUSDT"]\n'
        "[crawler.http]\nport = 9001\n"
        "[storer]\nbatch_size = 10\n"  # another service's section: ignored here
    )
    return path


def test_settings_file_values(config: Path) -> None:
    settings = load_settings(_DemoSettings, config)
    assert settings.crawler.depth == 50
    assert settings.crawler.symbols == ["ETHUSDT", "BNBUSDT"]
    assert settings.crawler.http.port == 9001
    assert settings.nats.servers == ["nats://10.0.0.1:4222"]


def test_settings_environment_overrides_file(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIRPRICE_CRAWLER__DEPTH", "100")
    monkeypatch.setenv("FAIRPRICE_CRAWLER__HTTP__PORT", "9100")
    monkeypatch.setenv("FAIRPRICE_NATS__SERVERS", '["nats://a:1", "nats://b:2"]')
    settings = load_settings(_DemoSettings, config)
    assert settings.crawler.depth == 100
    assert settings.crawler.http.port == 9100
    assert settings.nats.servers == ["nats://a:1", "nats://b:2"]


def test_settings_invalid_value_names_key_and_env(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIRPRICE_CRAWLER__DEPTH", "deep")
    with pytest.raises(SettingsError) as info:
        load_settings(_DemoSettings, config)
    message = str(info.value)
    assert "crawler.depth (env FAIRPRICE_CRAWLER__DEPTH; " in message
    assert "'deep'" in message
    assert str(config) in message
    assert info.value.exit_code == 2


def test_settings_unknown_key_fails_with_hint(config: Path) -> None:
    config.write_text(config.read_text().replace("depth = 50", "dpeth = 50"))
    with pytest.raises(SettingsError) as info:
        load_settings(_DemoSettings, config)
    message = str(info.value)
    assert "crawler.dpeth (env FAIRPRICE_CRAWLER__DPETH; config file" in message
    assert ": unknown setting" in message
    assert "did you mean 'depth'?" in message


def test_settings_unknown_section_fails(config: Path) -> None:
    config.write_text(config.read_text() + "\n[crawlr]\ndepth = 1\n")
    with pytest.raises(
        SettingsError, match=r"crawlr \(.*\): unknown section; did you mean 'crawler'"
    ):
        load_settings(_DemoSettings, config)


def test_settings_missing_required_setting(config: Path) -> None:
    class _Required(Section):
        url: str

    class _NeedsUrl(ServiceSettings):
        storer: _Required

    with pytest.raises(
        SettingsError, match=r"storer.url \(env FAIRPRICE_STORER__URL; .*\): Field required"
    ):
        load_settings(_NeedsUrl, config)


def test_settings_config_env_names_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=f"{CONFIG_ENV}=.*no such file"):
        config_path({CONFIG_ENV: str(tmp_path / "absent.toml")})


def test_settings_bad_toml_is_a_settings_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[crawler\n")
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(_DemoSettings, path)


def test_settings_unknown_variable_names_it(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIRPRICE_CRAWLR__DEPTH", "5")
    monkeypatch.setenv("FAIRPRICE_CRAWLER__HTTP__PROT", "5")
    monkeypatch.setenv("FAIRPRICE_STORER__ANYTHING", "5")  # another service's section
    with pytest.raises(SettingsError) as info:
        load_settings(_DemoSettings, config)
    assert str(info.value).splitlines() == [
        f"invalid setting crawler.http.prot (env FAIRPRICE_CRAWLER__HTTP__PROT; config file "
        f"{config}): unknown setting; did you mean 'port'?",
        f"invalid setting crawlr.depth (env FAIRPRICE_CRAWLR__DEPTH; config file {config}): "
        "unknown section; did you mean 'crawler'?",
    ]


def test_settings_list_variable_that_is_not_json(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIRPRICE_NATS__SERVERS", "nats://x:4222")
    with pytest.raises(SettingsError) as info:
        load_settings(_DemoSettings, config)
    assert str(info.value).splitlines() == [
        f"invalid setting nats.servers (env FAIRPRICE_NATS__SERVERS; config file {config}): "
        """expected JSON such as ["a", "b"], got 'nats://x:4222'""",
    ]


def test_settings_variables_that_are_not_settings_are_allowed(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIRPRICE_CLUSTER", "kind")
    monkeypatch.setenv("FAIRPRICE_RECORDINGS", "/tmp")
    assert load_settings(_DemoSettings, config).crawler.depth == 50


def test_settings_ignore_the_service_links_kubernetes_adds(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release named ``fairprice`` has Services ``fairprice-nats``, ...: Kubernetes gives every
    container ``FAIRPRICE_NATS_SERVICE_HOST`` and friends. Not settings, and not an error; a
    variable with the settings' ``__`` is still checked."""
    links = {
        "FAIRPRICE_NATS_SERVICE_HOST": "10.0.0.7",
        "FAIRPRICE_NATS_SERVICE_PORT": "4222",
        "FAIRPRICE_NATS_SERVICE_PORT_CLIENT": "4222",
        "FAIRPRICE_NATS_PORT": "tcp://10.0.0.7:4222",
        "FAIRPRICE_NATS_PORT_4222_TCP": "tcp://10.0.0.7:4222",
        "FAIRPRICE_NATS_PORT_4222_TCP_ADDR": "10.0.0.7",
        "FAIRPRICE_NATS_PORT_4222_TCP_PORT": "4222",
        "FAIRPRICE_NATS_PORT_4222_TCP_PROTO": "tcp",
        "FAIRPRICE_PRICE_API_SERVICE_HOST": "10.0.0.8",
    }
    for name, value in links.items():
        monkeypatch.setenv(name, value)
    load_settings(_DemoSettings, config)
    monkeypatch.setenv("FAIRPRICE_CRAWLER__PORT", "5")
    with pytest.raises(SettingsError, match="FAIRPRICE_CRAWLER__PORT"):
        load_settings(_DemoSettings, config)


def test_settings_overrides_merge_into_a_section(config: Path) -> None:
    settings = load_settings(_DemoSettings, config, crawler={"depth": 7})
    assert (settings.crawler.depth, settings.crawler.http.port) == (7, 9001)
