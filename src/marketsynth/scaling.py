"""The one per-feature affine scaler: ``(x - center) / scale`` over the last axis.

Every standardisation in marketsynth is one of these, fitted on some reference rows (training data for models, the
real windows for the evaluation's classifiers): ``standard`` (z-scores), ``symmetric`` (min-max to [-1, 1], for tanh
generators) and ``unit`` (min-max to [0, 1] with the TimeGAN paper's ``+ 1e-7``). A feature that does not vary keeps
scale 1 (``standard``/``symmetric``), so nothing is divided by zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_TINY_SPREAD = 1e-12


@dataclass
class AffineScaler:
    center: np.ndarray
    scale: np.ndarray

    @classmethod
    def standard(cls, values) -> AffineScaler:
        """Mean and standard deviation of every feature over all rows (all leading axes)."""
        flat = _flat(values)
        std = flat.std(axis=0)
        return cls(flat.mean(axis=0), np.where(std > _TINY_SPREAD, std, 1.0))

    @classmethod
    def symmetric(cls, values) -> AffineScaler:
        """Maps each feature's [min, max] onto [-1, 1]."""
        flat = _flat(values)
        low, high = flat.min(axis=0), flat.max(axis=0)
        half = (high - low) / 2
        return cls((high + low) / 2, np.where(half > _TINY_SPREAD, half, 1.0))

    @classmethod
    def unit(cls, values, eps: float = 1e-7) -> AffineScaler:
        """The TimeGAN paper's scaling: ``(x - min) / (max - min + eps)``."""
        flat = _flat(values)
        low = flat.min(axis=0)
        return cls(low, flat.max(axis=0) - low + eps)

    def __call__(self, values) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) - self.center) / self.scale

    transform = __call__

    def inverse(self, scaled) -> np.ndarray:
        return np.asarray(scaled, dtype=np.float64) * self.scale + self.center

    @property
    def log_abs_det(self) -> float:
        """``-sum(log scale)``: add it to a density of scaled rows to get the density of unscaled rows."""
        return float(-np.log(self.scale).sum())


def _flat(values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array.reshape(-1, array.shape[-1])
