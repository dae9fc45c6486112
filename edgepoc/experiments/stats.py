"""Confidence intervals and verdicts for paired comparisons over instances.

Every method runs on the same instances, so differences are paired per instance and the interval is
Student's t on the per-instance values (the instances are the sample; a method's own run-to-run noise
is inside them). Fewer than `MIN_INTERVAL_N` (5) instances give no interval: a t-interval from 2-4
values is mostly the t quantile's width (12.7 at 2 values), so nothing prints or plots one and the
verdict says "n < 5: no interval" instead of guessing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

# Two-sided 97.5 % quantiles of Student's t for 1..30 degrees of freedom (no SciPy in the install).
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042]
MIN_INTERVAL_N = 5  # fewer instances than this: no interval is computed, printed or plotted
NO_INTERVAL = f"n < {MIN_INTERVAL_N}: no interval"


def readable(value: float, spec: str) -> str:
    """`value` in `spec` where that reads well, in 4 significant digits past 1e9: a delay of 6e298 (a valid
    instance with capacities near 1e-300) printed with `,.2f` is a 300-digit number that stretches a table
    to hundreds of columns."""
    return format(value, ".4g" if math.isfinite(value) and abs(value) >= 1e9 else spec)


def t975(df: int) -> float:
    """The 97.5 % quantile of Student's t with `df` degrees of freedom (95 % two-sided interval)."""
    if df < 1:
        raise ValueError("df must be >= 1")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964  # Cornish-Fisher expansion around the normal quantile: < 1e-4 off for df > 30
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Interval:
    """Mean of a sample with its 95 % interval (`low`/`high` NaN when n < MIN_INTERVAL_N)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def defined(self) -> bool:
        return self.n >= 2 and math.isfinite(self.low) and math.isfinite(self.high)

    def contains(self, value: float) -> bool:
        return self.defined and self.low <= value <= self.high

    def fmt(self, spec: str = ".2f", unit: str = "") -> str:
        if not self.defined:
            return (f"{readable(self.mean, spec)}{unit} (n={self.n}, "
                    f"{NO_INTERVAL if self.n < MIN_INTERVAL_N else 'no interval'})")
        return f"{readable(self.mean, spec)}{unit} [{readable(self.low, spec)}, {readable(self.high, spec)}]"


def mean_interval(values: ArrayLike, min_n: int = MIN_INTERVAL_N) -> Interval:
    """Mean and 95 % t-interval of `values` (NaNs dropped); no interval from fewer than `min_n` values."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(v.mean())
    if n < max(2, min_n):
        return Interval(mean, math.nan, math.nan, n)
    scale = float(np.abs(v).max()) or 1.0  # the spread relative to the largest value: squares of 1e300 overflow
    half = t975(n - 1) * float((v / scale).std(ddof=1)) * scale / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def difference_verdict(diff: Interval) -> str:
    """How an interval on a paired difference (positive = better) reads: better, worse or not significant."""
    if not diff.defined:
        return f"not significant ({NO_INTERVAL})" if diff.n >= 1 else "not measured"
    if diff.low > 0:
        return "significantly better"
    if diff.high < 0:
        return "significantly worse"
    return "not significant"


def claim_verdict(improvement_pct: Interval, claimed_pct: float) -> str:
    """The paper's "X % better" against a measured improvement interval (in %).

    `holds`: significantly better and at least the claimed amount on average; `not significant`: the
    interval includes zero difference; `does not hold` otherwise (significantly better but by less,
    or significantly worse).
    """
    sig = difference_verdict(improvement_pct)
    if sig.startswith("not"):
        return "not significant"
    if sig == "significantly better" and improvement_pct.mean >= claimed_pct:
        return "holds"
    return "does not hold"
