"""Prometheus text read back: one scrape as a dict, sums over labels, histogram quantiles."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client.parser import text_string_to_metric_families

Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Metrics:
    out: Metrics = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and wanted <= set(ls))


def quantiles(
    before: Metrics, after: Metrics, name: str, qs: Sequence[float], **labels: str
) -> dict[str, float | None]:
    """Quantiles of a histogram's observations between two scrapes, linear in each bucket."""
    bucket = f"{name}_bucket"
    wanted = set(labels.items())
    counts: dict[float, float] = {}
    for (n, ls), v in after.items():
        if n == bucket and wanted <= set(ls):
            le = float(dict(ls)["le"])
            counts[le] = counts.get(le, 0.0) + v - before.get((n, ls), 0.0)
    bounds = sorted(counts)
    total = counts[bounds[-1]] if bounds else 0.0
    out: dict[str, float | None] = {}
    for q in qs:
        key = f"p{round(q * 100)}"
        if total <= 0:
            out[key] = None
            continue
        rank, lower, below = q * total, 0.0, 0.0
        for upper in bounds:
            if counts[upper] >= rank:
                if upper == float("inf"):
                    out[key] = lower
                else:
                    inside = counts[upper] - below
                    out[key] = lower + (upper - lower) * (rank - below) / inside
                break
            lower, below = upper, counts[upper]
    return out
