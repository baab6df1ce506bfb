"""bench/soak.py's verdict: what counts as memory that grows without bound."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def soak(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """bench/soak.py imported as bench/ scripts import each other (bench/ on sys.path)."""
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(BENCH))
    yield importlib.import_module("soak")
    for name in set(sys.modules) - before:
        if not name.startswith(("fairprice", "nats", "prometheus", "httpx", "psutil")):
            del sys.modules[name]


def _points(soak: ModuleType, anon: dict[str, list[float]], minutes: float) -> list[object]:
    count = len(next(iter(anon.values())))
    return [
        soak.Point(
            minute=minutes * (i + 1) / count,
            rss_mb={name: 100.0 for name in soak.PROCESSES},
            anon_mb={name: anon.get(name, [50.0] * count)[i] for name in soak.PROCESSES},
            p99_s={"books": 0.2, "prices": 0.3},
            events_s=500.0,
            backlog={},
            streams={},
        )
        for i in range(count)
    ]


def test_soak_passes_a_sawtooth_and_flags_a_rising_floor(soak: ModuleType) -> None:
    """influxd's cache fills and empties (a saw, bounded); a leak raises the floor."""
    saw = [40.0 + 10 * (i % 5) for i in range(40)]  # 40..80 MB, over and over
    leak = [50.0 + 1.0 * i for i in range(40)]  # 2 MB a minute over 20 minutes
    verdict = soak._verdict(
        "interval", 50, 20.0, _points(soak, {"influxd": saw, "converter": leak}, 20.0), {}
    )
    assert verdict["anon_floor_growth_mb_per_min"]["influxd"] == 0.0
    assert verdict["anon_floor_growth_mb_per_min"]["converter"] == pytest.approx(2.0, rel=0.2)
    assert verdict["problems"] == [
        f"converter anonymous memory grows "
        f"{verdict['anon_floor_growth_mb_per_min']['converter']:.2f} MB/min"
    ]
    assert not verdict["passed"]


def test_soak_fails_on_an_error_logged(soak: ModuleType) -> None:
    errors = {"storer-0": ['{"level": "error", "event": "write failed"}']}
    verdict = soak._verdict(
        "interval", 50, 20.0, _points(soak, {"storer": [50.0] * 40}, 20.0), errors
    )
    assert not verdict["passed"]
    assert verdict["problems"][0].startswith("storer-0: 1 errors logged")
