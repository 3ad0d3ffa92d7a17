"""Summaries of repeated measurements: median, spread, and the ratio against a baseline."""

from __future__ import annotations

import statistics
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank on the sorted values."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def summary(samples: list[float]) -> dict[str, Any]:
    """Median of the repetitions, their min/max and interquartile spread, and the samples."""
    if not samples:
        raise ValueError("no samples")
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "p25": percentile(samples, 25),
        "p75": percentile(samples, 75),
        "reps": len(samples),
        "samples": [round(s, 6) for s in samples],
    }


def spread_pct(s: dict[str, Any]) -> float:
    """Interquartile range as a percentage of the median (how noisy the repetitions were)."""
    return 100.0 * (s["p75"] - s["p25"]) / s["median"] if s["median"] else 0.0
