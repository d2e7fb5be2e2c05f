"""Small statistics helpers for the benchmark (pure functions)."""

from __future__ import annotations

import math
from collections.abc import Sequence

QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of ``values``; NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(len(ordered), rank) - 1]


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max/mean in milliseconds of durations given in seconds."""
    if not seconds:
        return {}
    ordered = sorted(seconds)
    out = {name: percentile(ordered, q) * 1000 for name, q in QUANTILES}
    out["max"] = ordered[-1] * 1000
    out["mean"] = sum(ordered) / len(ordered) * 1000
    return out


def rate_between(times: Sequence[float], lo: float, hi: float) -> float:
    """Events per second among ``times`` with ``lo <= t < hi``."""
    if hi <= lo:
        return math.nan
    return sum(1 for t in times if lo <= t < hi) / (hi - lo)


def steady_rate(times: Sequence[float], trim: float = 0.1) -> float:
    """Events per second between the ``trim`` and ``1 - trim`` quantiles of ``times`` (drops ramp-up and
    tail); NaN when there are too few events."""
    if len(times) < 20:
        return math.nan
    ordered = sorted(times)
    lo_i = int(len(ordered) * trim)
    hi_i = int(len(ordered) * (1 - trim)) - 1
    span = ordered[hi_i] - ordered[lo_i]
    return (hi_i - lo_i) / span if span > 0 else math.nan
