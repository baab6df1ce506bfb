"""bench/_ladder.py: which symbol count a system is measured at next."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench.{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _walk(ladder: object, capacity: int) -> list[int]:
    """The counts measured for a system that keeps up with up to ``capacity`` symbols."""
    measured = []
    while (n := ladder.next()) is not None:  # type: ignore[attr-defined]
        measured.append(n)
        ladder.record(n, n <= capacity)  # type: ignore[attr-defined]
    return measured


def test_ladder_climbs_to_the_first_failure_then_bisects_on_its_grain() -> None:
    ladder = _module("_ladder").Ladder([25, 50, 100, 250], bisect=2, grain=5)
    assert _walk(ladder, capacity=70) == [25, 50, 100, 75, 60]
    assert (ladder.good, ladder.bad) == (60, 75)


def test_ladder_that_never_fails_measures_every_step_and_no_more() -> None:
    ladder = _module("_ladder").Ladder([250, 500], bisect=1, grain=50)
    assert _walk(ladder, capacity=10_000) == [250, 500]
    assert ladder.bad == 0


def test_ladder_failing_at_once_bisects_below_its_first_step() -> None:
    ladder = _module("_ladder").Ladder([250, 500], bisect=1, grain=50)
    assert _walk(ladder, capacity=100) == [250, 100]
    assert (ladder.good, ladder.bad) == (100, 250)
