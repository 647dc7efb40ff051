"""Does the synthetic data look like the real data? Distribution statistics, coverage and candle validity.

Pure functions over arrays: returns ``[n, T]`` (see ``inputs.window_returns``), flattened window features
``[n, D]`` for the nearest-neighbour metrics, and candles ``[..., 5]`` for validity.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.neighbors import NearestNeighbors

from marketsynth.data.bars import valid_candles
from marketsynth.evaluation.stylized import acf, excess_kurtosis


def return_statistics(returns) -> dict[str, float]:
    """Mean, std, excess kurtosis and lag-1 autocorrelation of returns pooled over windows."""
    returns = np.asarray(returns, dtype=np.float64)
    flat = returns.ravel()
    lag1 = float(acf(returns, [1])[0]) if returns.ndim == 1 or returns.shape[-1] > 1 else 0.0
    return {
        "mean": float(flat.mean()),
        "std": float(flat.std()),
        "excess_kurtosis": excess_kurtosis(flat),
        "lag1_autocorrelation": lag1,
    }


def histogram_kl(real, synthetic, bins: int = 50, smoothing: float = 0.5, clip_quantile: float = 0.001) -> float:
    """KL(real || synthetic) in nats between histograms of two 1-D samples on shared bins.

    Bins: ``bins`` equal-width bins spanning the REAL sample's [0.1 %, 99.9 %] quantiles, so a few extreme
    values cannot stretch the grid; values outside land in the edge bins (both samples are clipped alike, so
    too many synthetic extremes still show up as excess mass there). Smoothing: ``smoothing`` pseudo-counts
    (0.5 = Jeffreys) are added to every bin of both histograms, which keeps the divergence finite when the
    synthetic sample leaves a bin empty. 0 means identical histograms; the sampling noise of two independent
    samples of n values each is roughly bins / n.
    """
    real = np.ravel(np.asarray(real, dtype=np.float64))
    synthetic = np.ravel(np.asarray(synthetic, dtype=np.float64))
    low, high = np.quantile(real, [clip_quantile, 1 - clip_quantile])
    if high <= low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    p = np.histogram(np.clip(real, low, high), edges)[0] + smoothing
    q = np.histogram(np.clip(synthetic, low, high), edges)[0] + smoothing
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def coverage(real, synthetic, k: int = 5) -> float:
    """Coverage (Naeem et al., ICML 2020, "Reliable fidelity and diversity metrics for generative models").

    The share of real samples whose k-nearest-neighbour ball among the real samples (radius: distance to the
    k-th nearest other real sample) holds at least one synthetic sample. 1 means synthetic samples reach
    every region of the real data; a generator that collapses onto a few typical windows scores low, even if
    each of its windows is realistic. Unlike recall it is robust to real outliers. Rows are flattened windows.
    """
    real, synthetic = _flat(real), _flat(synthetic)
    k = min(k, len(real) - 1)
    if k < 1:
        raise ValueError("coverage needs at least 2 real samples")
    radius = NearestNeighbors(n_neighbors=k + 1).fit(real).kneighbors(real)[0][:, -1]  # [0] is itself
    nearest_synthetic = NearestNeighbors(n_neighbors=1).fit(synthetic).kneighbors(real)[0][:, 0]
    return float(np.mean(nearest_synthetic <= radius))


def expected_coverage(n_real: int, n_synthetic: int, k: int = 5) -> float:
    """Coverage expected when synthetic and real come from the same distribution (Naeem et al., eq. 6).

    1 - prod_{i=1..k} (n_real - i) / (n_real + n_synthetic - i), about 1 - 2^-k = 0.97 for equal sizes, k=5.
    """
    k = min(k, n_real - 1)
    return 1.0 - math.prod((n_real - i) / (n_real + n_synthetic - i) for i in range(1, k + 1))


def candle_validity(candles) -> np.ndarray:
    """Per candle: the data layer's one validity rule (``data.bars.valid_candles``)."""
    return valid_candles(candles)


def candle_validity_rate(candles) -> float:
    """Share of candles that are valid (see ``candle_validity``); 1.0 for real exchange data."""
    return float(np.mean(candle_validity(candles)))


def _flat(windows) -> np.ndarray:
    windows = np.asarray(windows, dtype=np.float64)
    return windows.reshape(len(windows), -1)
