"""The estimate of the time left while symbols sync."""

from __future__ import annotations

from fairprice.crawler.progress import SyncProgress


def test_the_estimate_follows_the_rate_of_the_last_seconds() -> None:
    now = [0.0]
    progress = SyncProgress(window_s=10.0, clock=lambda: now[0])
    progress.sample(0, 100)
    assert progress.eta_s is None  # nothing to go by yet
    for second, synced in ((1, 0), (5, 40), (10, 50)):
        now[0] = second
        progress.sample(synced, 100)
    assert progress.eta_s == 50 / (50 / 10)
    now[0] = 20.0  # 10 s later, 30 more: the old samples no longer count
    progress.sample(80, 100)
    assert progress.eta_s == 20 / (30 / 10)
    progress.sample(100, 100)
    assert progress.eta_s == 0.0
    now[0] = 40.0
    progress.sample(100, 120)  # 20 new symbols, none synced in the last 20 s
    assert progress.eta_s is None
