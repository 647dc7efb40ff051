"""Memorization: does the generator copy its training windows?

A generator that learned the distribution puts its samples as close to the training windows as fresh real
windows (that it never saw) are. One that memorised puts many samples much closer. So we measure, on
flattened standardised window features, how close each synthetic window is to its nearest TRAINING window and
the same for HELD-OUT real windows, take the held-out values' 5th percentile as the threshold and count the
share of synthetic windows below it. Without copying that share is about 5 %.

Closeness is *relative* by default: the distance to the nearest training window divided by that training
window's own distance to its nearest other training window (the local spacing of the training data, as in
the "authenticity" test of Alaa et al., ICML 2022). Raw distances confound copying with density: a generator
whose windows are calmer than the real ones puts them in the crowded centre of the data, where every window
has close neighbours, and would look like a copier. ``relative=False`` gives the raw-distance test.

Flag rule: copying is flagged when the share exceeds twice the expected share plus three binomial standard
errors, 2q + 3 sqrt(q (1 - q) / n) (q = 0.05, n synthetic windows): "clearly above" rather than noise.
Exact copies (distance 0 up to float rounding) are counted separately.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from sklearn.neighbors import NearestNeighbors

EXACT_COPY_TOLERANCE = 1e-9  # per value, relative: float noise in a copy's features is not "new data"


@dataclass
class Memorization:
    share_closer: float  # synthetic windows closer to the training set than the held-out 5th percentile
    expected_share: float  # the quantile used (0.05): the share without copying
    limit: float  # above this share copying is flagged
    flagged: bool
    threshold: float  # the held-out closeness quantile
    exact_copies: int
    relative: bool  # closeness = distance / local spacing of the training data (else the raw distance)
    synthetic_closeness: np.ndarray = field(repr=False)
    heldout_closeness: np.ndarray = field(repr=False)


def _flat(windows: np.ndarray) -> np.ndarray:
    return np.asarray(windows, dtype=np.float64).reshape(len(windows), -1)


def nearest_distances(reference: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Euclidean distance of each query window to its nearest reference window (windows flattened)."""
    return NearestNeighbors(n_neighbors=1).fit(_flat(reference)).kneighbors(_flat(queries))[0][:, 0]


class _Closeness:
    """Nearest-training-window distances, raw or divided by that training window's local spacing."""

    def __init__(self, train: np.ndarray, relative: bool):
        self.train = _flat(train)
        self.index = NearestNeighbors(n_neighbors=min(2, len(self.train))).fit(self.train)
        self.relative = relative and len(self.train) >= 2

    def __call__(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(closeness, index of the nearest training window) of each query window."""
        distance, nearest = self.index.kneighbors(_flat(queries), n_neighbors=1)
        distance, nearest = distance[:, 0], nearest[:, 0]
        if not self.relative:
            return distance, nearest
        used, where = np.unique(nearest, return_inverse=True)
        spacing = self.index.kneighbors(self.train[used], n_neighbors=2)[0][:, 1][where]
        floor = max(float(np.median(spacing)) * 1e-6, 1e-12)  # duplicated training windows have spacing 0
        return distance / np.maximum(spacing, floor), nearest

    def exact_copies(self, queries: np.ndarray, nearest: np.ndarray) -> int:
        """How many queries equal their nearest training window (up to float rounding)."""
        original = self.train[nearest]
        same = np.abs(_flat(queries) - original) <= EXACT_COPY_TOLERANCE * (1 + np.abs(original))
        return int(same.all(axis=1).sum())


def copy_limit(expected_share: float, n_synthetic: int) -> float:
    """The share above which ``memorization`` flags copying (see module doc)."""
    q = expected_share
    return 2 * q + 3 * math.sqrt(q * (1 - q) / max(n_synthetic, 1))


def memorization(
    synthetic: np.ndarray,
    train: np.ndarray,
    heldout: np.ndarray,
    quantile: float = 0.05,
    *,
    relative: bool = True,
) -> Memorization:
    """Compare how close synthetic and held-out real windows come to the training windows (standardised
    features, any shape ``[n, ...]``; ``heldout`` must share no bars with ``train``)."""
    closeness = _Closeness(train, relative)
    synthetic_closeness, nearest = closeness(synthetic)
    heldout_closeness, _ = closeness(heldout)
    threshold = float(np.quantile(heldout_closeness, quantile))
    share = float(np.mean(synthetic_closeness < threshold))
    limit = copy_limit(quantile, len(synthetic_closeness))
    return Memorization(
        share_closer=share,
        expected_share=quantile,
        limit=limit,
        flagged=share > limit,
        threshold=threshold,
        exact_copies=closeness.exact_copies(synthetic, nearest),
        relative=closeness.relative,
        synthetic_closeness=synthetic_closeness,
        heldout_closeness=heldout_closeness,
    )
