"""Stylized facts of returns (Cont 2001) over windows of returns ``[n, T]``.

Every statistic is pooled over windows but never pairs returns from different windows: the windows of a
synthetic set are independent samples with no order between them, so a lag-k pair only exists inside a window.
For a 1-D series pass ``x[None]``. Means and variances are pooled over all windows (a window's own mean
would bias short-window ACFs downwards by about 1/T).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

AGGREGATION_SCALES = (1, 4, 24)


def _rows(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[None] if x.ndim == 1 else x.reshape(-1, x.shape[-1]) if x.ndim > 2 else x


def _lags(lags: int | Sequence[int], length: int) -> np.ndarray:
    lags = np.arange(1, lags + 1) if np.isscalar(lags) else np.asarray(lags, dtype=int)
    if (lags < 1).any() or (lags >= length).any():
        raise ValueError(f"lags must be between 1 and {length - 1} for windows of {length} returns")
    return lags


def acf(x, lags: int | Sequence[int]) -> np.ndarray:
    """Autocorrelation at each lag (``lags``: a maximum lag K for 1..K, or a list), pooled within rows."""
    x = _rows(x)
    lags = _lags(lags, x.shape[1])
    centred = x - x.mean()
    variance = np.mean(centred**2)
    if variance == 0:
        return np.zeros(len(lags))
    return np.array([np.mean(centred[:, :-k] * centred[:, k:]) for k in lags]) / variance


def leverage(x, lags: int | Sequence[int]) -> np.ndarray:
    """corr(r_t, r_{t+k}^2) at each lag: negative in real markets (falls are followed by higher volatility)."""
    x = _rows(x)
    lags = _lags(lags, x.shape[1])
    out = np.zeros(len(lags))
    for i, k in enumerate(lags):
        now, later = x[:, :-k].ravel(), x[:, k:].ravel() ** 2
        if now.std() > 0 and later.std() > 0:
            out[i] = np.corrcoef(now, later)[0, 1]
    return out


def excess_kurtosis(x) -> float:
    """Fisher kurtosis (0 for a normal distribution) of all returns pooled; heavy tails make it large."""
    x = np.ravel(np.asarray(x, dtype=np.float64))
    return float(stats.kurtosis(x)) if x.std() > 0 else 0.0


def hill_tail_index(x, tail_fraction: float = 0.05, min_k: int = 10) -> float | None:
    """Hill estimator of the tail index alpha of |x| from its k largest values, k = max(min_k, 5 % of n).

    alpha = k / sum_i log(x_(i) / x_(k+1)) over the k largest |x|. For a Pareto tail P(|X| > x) ~ x^-alpha it
    estimates alpha; smaller means heavier tails (hourly crypto returns: about 2.5-4; a normal's tail has no
    finite alpha and the estimate grows with n). None when there are too few non-zero values.
    """
    magnitudes = np.sort(np.abs(np.ravel(np.asarray(x, dtype=np.float64))))[::-1]
    k = max(min_k, int(tail_fraction * len(magnitudes)))
    if len(magnitudes) <= k or magnitudes[k] <= 0:
        return None
    return float(k / np.sum(np.log(magnitudes[:k] / magnitudes[k])))


def aggregate_returns(x, bars: int) -> np.ndarray:
    """Returns summed over non-overlapping blocks of ``bars`` inside each window (a log return over ``bars``)."""
    x = _rows(x)
    blocks = x.shape[1] // bars
    if blocks == 0:
        return np.empty(0)
    return x[:, : blocks * bars].reshape(len(x), blocks, bars).sum(axis=2).ravel()


def wasserstein(real, synthetic) -> float:
    """Earth mover's distance between two 1-D samples, in units of the real sample's std (scale-free)."""
    real, synthetic = np.ravel(real), np.ravel(synthetic)
    scale = real.std()
    distance = stats.wasserstein_distance(real, synthetic)
    return float(distance / scale) if scale > 0 else float(distance)


def aggregational_gaussianity(real, synthetic, scales: Sequence[int] = AGGREGATION_SCALES) -> list[dict]:
    """Per aggregation scale: kurtosis of real and synthetic aggregated returns and their Wasserstein distance.

    Aggregation happens inside windows, so a scale longer than the window (T returns) cannot be measured:
    those entries have None values and ``"reason"``. Few windows give few long-scale samples (one per window
    at scale T), so the long-scale numbers are noisier.
    """
    real, synthetic = _rows(real), _rows(synthetic)
    length = min(real.shape[1], synthetic.shape[1])
    out = []
    for bars in scales:
        if bars > length:
            out.append({"bars": bars, "real": None, "synthetic": None, "distance": None,
                        "reason": f"windows hold {length} returns, fewer than {bars}"})
            continue
        r, s = aggregate_returns(real, bars), aggregate_returns(synthetic, bars)
        out.append({"bars": bars, "real": excess_kurtosis(r), "synthetic": excess_kurtosis(s),
                    "distance": wasserstein(r, s), "reason": None})
    return out


def max_lag(length: int, cap: int = 24) -> int:
    """Longest lag worth computing in windows of ``length`` returns: up to ``cap``, leaving >= 1 pair."""
    return max(1, min(cap, length - 1))


def stylized_profile(x, lags: int | None = None) -> dict[str, np.ndarray | float | None]:
    """The curves and numbers the report plots: ACF of r and |r|, leverage per lag, kurtosis and Hill index."""
    x = _rows(x)
    lags = max_lag(x.shape[1]) if lags is None else lags
    return {
        "lags": np.arange(1, lags + 1),
        "acf": acf(x, lags),
        "acf_abs": acf(np.abs(x), lags),
        "leverage": leverage(x, lags),
        "excess_kurtosis": excess_kurtosis(x),
        "hill_tail_index": hill_tail_index(x),
    }
