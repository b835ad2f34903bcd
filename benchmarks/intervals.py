"""The paired comparisons the benchmark scripts print: a mean and its 95 % t interval."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from scipy import stats


def interval(values: Sequence[float]) -> str:
    """``mean [low, high]``: the mean of ``values`` (e.g. per-seed differences of two arms) and
    its two-sided 95 % Student-t interval, mean -+ t(0.975, n - 1) s / sqrt(n); the mean alone
    for fewer than two values."""
    values = [float(v) for v in values]
    if not values:
        return "n/a"
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:+.4f}"
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return f"{mean:+.4f} [{mean - half:+.4f}, {mean + half:+.4f}]"
