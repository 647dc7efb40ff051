"""Small synthetic candle sets for the evaluation tests (valid candles from a random walk)."""

from __future__ import annotations

import numpy as np


def random_walk_candles(n: int, length: int, seed: int = 0, vol: float = 0.01, start: float = 100.0) -> np.ndarray:
    """``[n, length, 5]`` valid candles: Gaussian log returns, wicks and log-normal volume."""
    rng = np.random.default_rng(seed)
    returns = rng.normal(0, vol, (n, length))
    close = start * np.exp(np.cumsum(returns, axis=1))
    open_ = np.concatenate([np.full((n, 1), start), close[:, :-1]], axis=1)
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, vol / 2, (n, length))))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, vol / 2, (n, length))))
    volume = np.exp(rng.normal(3, 0.5, (n, length)))
    return np.stack([open_, high, low, close, volume], axis=-1)
