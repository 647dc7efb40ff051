"""How good the extra training material of a fold is, with the evaluation module's metrics (``evaluation``).

Synthetic paths are cut into non-overlapping windows of ``seq_len`` bars; the real references are the windows of
the fold's training bars (what the generator saw) and of its held-out test bars (what the strategy trades):

- **TSTR ratio** (``evaluation.tstr``): a random forest trained on synthetic windows vs one trained on real training
  windows, both tested on the held-out test windows (direction of the last bar); 1 = as useful as real data.
- **KL of returns** (``evaluation.histogram_kl``): KL(held-out real || synthetic) of the bar returns, nats.
- **lag-1 autocorrelation difference**: synthetic minus held-out real (``evaluation.return_statistics``).
- **diversity**: coverage of the held-out real windows by the synthetic ones (``evaluation.coverage``, on features
  scaled with the real windows' statistics), next to ``expected``: the coverage two samples of the same
  distribution reach at these sizes (``evaluation.expected_coverage``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from marketsynth.evaluation import coverage, expected_coverage, histogram_kl, return_statistics, tstr
from marketsynth.evaluation.inputs import FeatureScaler, candle_windows, subsample, window_features, window_returns

SEQ_LEN = 24
MAX_WINDOWS = 1500  # per side: keeps the random forest and the nearest neighbours to seconds


def synthetic_windows(paths: list[pd.DataFrame], seq_len: int = SEQ_LEN) -> np.ndarray:
    """Non-overlapping candle windows ``[n, seq_len, 5]`` of every path."""
    cut = [candle_windows(frame, seq_len, stride=seq_len) for frame in paths if len(frame) > seq_len]
    return np.concatenate(cut) if cut else np.empty((0, seq_len, 5))


def data_quality(paths: list[pd.DataFrame], train: pd.DataFrame, test: pd.DataFrame, *, timeframe: str | None,
                 seed: int = 0, seq_len: int = SEQ_LEN) -> dict[str, Any]:
    """The four figures of the module docstring for one fold's synthetic ``paths``."""
    rng = np.random.default_rng(seed)
    synthetic = subsample(synthetic_windows(paths, seq_len), MAX_WINDOWS, rng)
    real_train = subsample(candle_windows(train, seq_len, timeframe=timeframe), MAX_WINDOWS, rng)
    real_test = subsample(candle_windows(test, seq_len, timeframe=timeframe), MAX_WINDOWS, rng)
    scores = tstr(window_features(synthetic), window_features(real_train), window_features(real_test), seed=seed,
                  n_jobs=1)
    real_r, synthetic_r = window_returns(real_test), window_returns(synthetic)
    scale = FeatureScaler(window_features(real_test).reshape(-1, 5))
    real_f = scale(window_features(real_test).reshape(-1, 5)).reshape(len(real_test), -1)
    synthetic_f = scale(window_features(synthetic).reshape(-1, 5)).reshape(len(synthetic), -1)
    lag1 = return_statistics(synthetic_r)["lag1_autocorrelation"] - return_statistics(real_r)["lag1_autocorrelation"]
    return {"tstr_ratio": _f(scores["ratio"]), "tstr": scores["tstr"], "trtr": scores["trtr"],
            "kl_returns": histogram_kl(real_r, synthetic_r), "acf1_diff": float(lag1),
            "diversity": coverage(real_f, synthetic_f), "diversity_expected": expected_coverage(len(real_f),
                                                                                                len(synthetic_f)),
            "synthetic_windows": int(len(synthetic)), "real_test_windows": int(len(real_test))}


def _f(value) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None
