"""Percentiles, as every published figure (bench tables, poke latency) computes them."""

from __future__ import annotations

import math


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted values: the smallest value with at
    least q % of the values at or below it, always one of the values (p50 of an even count
    is the lower middle one, not a mean). None when empty.

    This is the definition behind the performance tables of scripts/bench.py and
    scripts/poke_latency.py (README, docs/performance.md)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
