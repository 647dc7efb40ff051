"""Statistics of an experiment over its units (fold × seed): means with bootstrap confidence intervals, paired
differences, and the probabilistic / deflated Sharpe ratios of every configuration tried.

- ``mean_ci``: the mean of the defined values and a percentile bootstrap interval of it (``resamples`` draws with
  replacement from a seeded ``numpy.random.Generator``, so the same inputs and seed give the same interval).
- ``paired``: per unit ``a - b`` where both are defined, then ``mean_ci`` of the differences — the pairing
  removes what a fold or a seed does to every arm alike.
- ``sharpe_table``: per configuration (arm × generator × seed), the daily returns of its test periods chained in time
  order; the per-period Sharpe ratio, PSR against 0 (``trading.performance.probabilistic_sharpe_ratio``) and the
  DSR (``deflated_sharpe_ratio``) with the number of trials = every configuration tried and the variance of their
  Sharpe ratios across them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from marketsynth.trading.performance import deflated_sharpe_ratio, probabilistic_sharpe_ratio, return_moments

CONFIDENCE = 0.95
RESAMPLES = 2000


def _defined(values: Sequence[float | None]) -> np.ndarray:
    array = np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return array[np.isfinite(array)]


def mean_ci(values: Sequence[float | None], *, seed: int = 0, confidence: float = CONFIDENCE,
            resamples: int = RESAMPLES) -> dict[str, Any]:
    """``{"mean", "low", "high", "n", "undefined"}`` over the finite values (None/NaN are counted as undefined);
    the interval is a percentile bootstrap of the mean. With fewer than 2 values the interval is the mean itself
    (n = 1) or None (n = 0)."""
    array = _defined(values)
    undefined = len(values) - len(array)
    if len(array) == 0:
        return {"mean": None, "low": None, "high": None, "n": 0, "undefined": undefined}
    mean = float(array.mean())
    if len(array) == 1:
        return {"mean": mean, "low": mean, "high": mean, "n": 1, "undefined": undefined}
    rng = np.random.default_rng(seed)
    means = array[rng.integers(0, len(array), size=(resamples, len(array)))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return {"mean": mean, "low": float(low), "high": float(high), "n": int(len(array)), "undefined": undefined}


def paired(a: Sequence[float | None], b: Sequence[float | None], *, seed: int = 0,
           confidence: float = CONFIDENCE, resamples: int = RESAMPLES) -> dict[str, Any]:
    """``mean_ci`` of ``a[i] - b[i]`` over the units where both are defined, plus the shares of units where
    ``a > b`` (``wins``) and ``a < b`` (``losses``)."""
    if len(a) != len(b):
        raise ValueError(f"paired differences need the same units: {len(a)} vs {len(b)} values")
    diffs = [None if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)) else float(x) - float(y)
             for x, y in zip(a, b, strict=True)]
    out = mean_ci(diffs, seed=seed, confidence=confidence, resamples=resamples)
    defined = _defined(diffs)
    out["wins"] = float(np.mean(defined > 0)) if len(defined) else None
    out["losses"] = float(np.mean(defined < 0)) if len(defined) else None
    return out


def sharpe_table(returns: dict[str, pd.Series]) -> dict[str, dict[str, Any]]:
    """Per configuration (key → its chained daily test returns): ``sharpe`` (per period), ``psr``, ``dsr``,
    ``days``; ``trials`` and ``trial_variance`` are the deflation's inputs (the same for every row)."""
    rows: dict[str, dict[str, Any]] = {}
    srs = []
    for key, series in returns.items():
        array = np.asarray(series, dtype=np.float64)
        array = array[np.isfinite(array)]
        sd = float(array.std(ddof=1)) if len(array) > 1 else 0.0
        sr = float(array.mean() / sd) if sd > 1e-12 else None
        rows[key] = {"sharpe": sr, "days": int(len(array)), "psr": probabilistic_sharpe_ratio(array)
                     if len(array) else None, "moments": return_moments(array) if len(array) else None}
        if sr is not None:
            srs.append(sr)
    trials = len(returns)
    variance = float(np.var(srs, ddof=1)) if len(srs) > 1 else 0.0
    for row in rows.values():
        moments = row.pop("moments")
        row["dsr"] = (deflated_sharpe_ratio(row["sharpe"], trials, variance, row["days"], *moments)
                      if row["sharpe"] is not None and moments is not None else None)
        row["trials"], row["trial_variance"] = trials, variance
    return rows
