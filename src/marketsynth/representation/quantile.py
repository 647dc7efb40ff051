"""Rank scaling with atoms: each feature mapped through its empirical CDF to a normal or uniform score.

Why: GANs see fat-tailed features (a few returns 10 standard deviations out) and *atoms*: on 1h crypto the open
equals the previous close in a third to a half of the bars (gap exactly 0) and some wicks are exactly 0. A
continuous generator never outputs an exact value, so an affine scaling gives it no way to make those bars; a
discriminator tells its windows apart at once. Here, fitted on training rows:

* a value repeated exactly in at least ``atom_share`` of the rows is an **atom**; it owns the interval
  ``[F(a-), F(a)]`` of probability, and every score in that interval decodes to exactly ``a``. Encoding spreads
  the atom's rows uniformly (seeded, so encoding is repeatable) over its interval, so the encoded marginal is
  continuous and a generator only has to land in the right interval;
* the other values follow a monotone piecewise-linear map through ``knots`` order statistics, in *score* space:
  ``normal`` scores ``Phi^-1(u)`` (standard normal marginals for linear-output generators: fat tails tamed),
  ``uniform`` scores ``2u - 1`` in [-1, 1] (for tanh generators);
* beyond the outermost knots the end segments are extended linearly (a tail keeps the slope of its last
  segment; an atom at the edge gets a sloped knot beyond it, so values outside the training range keep distinct
  scores), and decoded values are clamped to the fitted range widened by its width on each side, so *every*
  finite output decodes to a finite value (and values that far out of the training range do not round-trip).

Encoding then decoding gives back the feature values (atoms exactly, the others to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

TARGETS = ("normal", "uniform")
_DITHER_SEED = 20_241_201  # atoms' rows are spread over their interval with this seed (encoding is repeatable)


@dataclass
class QuantileMap:
    """Per feature: knots ``x`` (non-decreasing; an atom appears twice, at both ends of its interval) and their
    scores ``s`` (strictly increasing), plus the atoms' values."""

    target: str
    x: list[np.ndarray]
    s: list[np.ndarray]
    atoms: list[np.ndarray]

    @classmethod
    def fit(cls, values, target: str = "normal", *, knots: int = 256, atom_share: float = 0.005) -> QuantileMap:
        """Fit on rows ``[..., F]`` (all leading axes are rows)."""
        if target not in TARGETS:
            raise ValueError(f"unknown quantile target '{target}'; use one of {', '.join(TARGETS)}")
        flat = np.asarray(values, dtype=np.float64)
        flat = flat.reshape(-1, flat.shape[-1])
        xs, ss, atoms = [], [], []
        for column in flat.T:
            x, u, atom = _knots(np.sort(column), knots, atom_share)
            x, s = _open_ends(x, _score(u, target, len(column)), float(column.std()) if len(column) else 1.0)
            xs.append(x)
            ss.append(s)
            atoms.append(atom)
        return cls(target, xs, ss, atoms)

    @property
    def n_features(self) -> int:
        return len(self.x)

    def transform(self, values) -> np.ndarray:
        """Feature values ``[..., F]`` -> scores; atoms' rows are spread over their intervals (seeded)."""
        values = np.asarray(values, dtype=np.float64)
        out = np.empty_like(values)
        rng = np.random.default_rng(_DITHER_SEED)
        for j in range(self.n_features):
            x, s, column = self.x[j], self.s[j], values[..., j]
            scores = _piecewise(column, x, s)
            for atom in self.atoms[j]:
                hit = column == atom
                if hit.any():
                    at = np.flatnonzero(x == atom)
                    low, high = self._position(s[at[0]]), self._position(s[at[-1]])
                    u = low + (high - low) * rng.uniform(0.02, 0.98, int(hit.sum()))
                    scores[hit] = ndtri(u) if self.target == "normal" else 2 * u - 1
            out[..., j] = scores
        return out

    def inverse(self, scores) -> np.ndarray:
        """Scores ``[..., F]`` -> feature values; any finite score gives a finite value, an atom's interval its
        exact value."""
        scores = np.asarray(scores, dtype=np.float64)
        out = np.empty_like(scores)
        for j in range(self.n_features):
            x, s = self.x[j], self.s[j]
            width = max(x[-1] - x[0], 1e-12)
            clipped = np.clip(scores[..., j], -1e6, 1e6)  # keeps inf out of the interpolation's arithmetic
            out[..., j] = np.clip(_piecewise(clipped, s, x), x[0] - width, x[-1] + width)
        return out

    def _position(self, score: float) -> float:
        """A score's CDF position u (atoms are spread uniformly in u, so the encoded marginal stays normal)."""
        return float(ndtr(score)) if self.target == "normal" else (score + 1) / 2

    def feature_inverse(self, scores, j: int) -> np.ndarray:
        """``inverse`` of one feature's scores (any shape)."""
        scores = np.asarray(scores, dtype=np.float64)
        return self.inverse(np.broadcast_to(scores[..., None], (*scores.shape, self.n_features)))[..., j]

    def to_dict(self) -> dict:
        return {"target": self.target, "x": [[float(v) for v in x] for x in self.x],
                "s": [[float(v) for v in s] for s in self.s], "atoms": [[float(v) for v in a] for a in self.atoms]}

    @classmethod
    def from_dict(cls, data: dict, n_features: int) -> QuantileMap:
        """Rebuild from ``to_dict``; ValueError when anything is malformed."""
        target = data["target"]
        if target not in TARGETS:
            raise ValueError(f"unknown quantile target {target!r}")
        xs = [np.asarray(x, dtype=np.float64) for x in data["x"]]
        ss = [np.asarray(s, dtype=np.float64) for s in data["s"]]
        atoms = [np.asarray(a, dtype=np.float64) for a in data["atoms"]]
        if not len(xs) == len(ss) == len(atoms) == n_features:
            raise ValueError(f"quantile knots must be given for {n_features} features")
        for x, s in zip(xs, ss, strict=True):
            if x.ndim != 1 or x.shape != s.shape or len(x) < 2 or not (np.isfinite(x).all() and np.isfinite(s).all()):
                raise ValueError("quantile knots must be two finite, equally long lists of at least 2 values")
            if (np.diff(x) < 0).any() or (np.diff(s) <= 0).any():
                raise ValueError("quantile knots must be non-decreasing (values) and increasing (scores)")
        return cls(target, xs, ss, atoms)


def _knots(sorted_values: np.ndarray, knots: int, atom_share: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Knot values, their CDF positions u (mid-rank) and the atoms of one sorted feature column."""
    n = len(sorted_values)
    unique, first, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    is_atom = counts >= max(2, atom_share * n)
    continuous = unique[~is_atom]
    if len(continuous):
        picks = np.unique(np.round(np.linspace(0, len(continuous) - 1, min(knots, len(continuous)))).astype(int))
        picked = np.isin(unique, continuous[picks])
    else:
        picked = np.zeros(len(unique), dtype=bool)
    x, u = [], []
    for value, start, count, atom, keep in zip(unique, first, counts, is_atom, picked, strict=True):
        if atom:
            x += [value, value]
            u += [start / n, (start + count) / n]
        elif keep:
            x.append(value)
            u.append((start + 0.5 * count) / n)
    if len(x) < 2:  # a constant feature (or one value): a flat map around it
        value = float(sorted_values[0]) if n else 0.0
        return np.array([value, value]), np.array([0.25, 0.75]), np.zeros(0)
    return np.asarray(x), np.asarray(u), unique[is_atom]


def _open_ends(x: np.ndarray, s: np.ndarray, spread: float) -> tuple[np.ndarray, np.ndarray]:
    """An atom at an edge (or a constant feature) gets a sloped knot beyond it, one score and one spread of the
    feature out, so values outside the training range still encode to distinct scores and decode back."""
    width = spread if spread > 1e-12 else 1.0
    if x[0] == x[1]:
        x, s = np.concatenate([[x[0] - width], x]), np.concatenate([[s[0] - 1.0], s])
    if x[-1] == x[-2]:
        x, s = np.concatenate([x, [x[-1] + width]]), np.concatenate([s, [s[-1] + 1.0]])
    return x, s


def _score(u: np.ndarray, target: str, n: int) -> np.ndarray:
    """CDF positions -> scores; positions are kept half a row inside (0, 1) so the normal scores are finite."""
    u = np.clip(u, 0.5 / max(n, 1), 1 - 0.5 / max(n, 1))
    return ndtri(u) if target == "normal" else 2 * u - 1


def _piecewise(values: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Linear interpolation through (xp, fp), extended linearly by the end segments; ``xp`` may repeat a value
    (an atom's plateau; values equal to it are the caller's business), ``fp`` equal neighbours give that value
    exactly."""
    index = np.clip(np.searchsorted(xp, values, side="right") - 1, 0, len(xp) - 2)
    x0, x1, f0, f1 = xp[index], xp[index + 1], fp[index], fp[index + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(x1 > x0, (values - x0) / (x1 - x0), 0.0)
    return f0 + (f1 - f0) * t
