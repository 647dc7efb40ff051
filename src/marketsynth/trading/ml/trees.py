"""Boosted trees as plain arrays: export a fitted scikit-learn ``HistGradientBoostingClassifier``, predict in numpy.

Why not pickle, and why not another model
    scikit-learn models are saved with pickle (or skops), and loading a pickle runs code. A gradient-boosting
    model is, however, nothing but arrays: for every node the feature it tests, the threshold, its two children,
    whether missing values go left, whether it is a leaf and the leaf's value, plus one baseline log-odds. So the
    strategy keeps scikit-learn for *fitting* (its histogram algorithm, seeded) and stores those arrays in a
    safetensors file; prediction is this module's numpy traversal, used both right after fitting and after
    loading, so a loaded strategy gives bit-identical probabilities and loading only parses numbers.

    The export reads scikit-learn's fitted ``_predictors`` (a list per boosting iteration of ``TreePredictor``
    objects whose ``nodes`` record array holds the fields above) and ``_baseline_prediction``: private attributes,
    so ``tests/unit/test_trading_ml.py`` checks the traversal against ``predict_proba`` on every run; a scikit-learn
    that changed them would fail there, not silently. Categorical splits are not used (all features are numeric)
    and are refused.

Semantics (scikit-learn's): at a split node a row goes left when ``x[feature] <= threshold``, or when ``x`` is
NaN and ``missing_left``; the raw score is ``baseline + sum of the reached leaf values`` and the probability of
class 1 is ``1 / (1 + exp(-raw))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marketsynth.errors import ModelError

_CHUNK = 4096  # rows traversed at once (bounds the [rows, trees] index arrays)
_FIELDS = ("feature", "threshold", "left", "right", "leaf", "missing_left", "value", "roots", "baseline")


@dataclass(frozen=True)
class TreeEnsemble:
    """Binary-classification boosted trees. Node arrays are concatenated over trees; ``left``/``right`` are global
    node indices; ``roots[k]`` is tree ``k``'s root; ``depth`` bounds every root-to-leaf path."""

    feature: np.ndarray  # int64 [nodes]
    threshold: np.ndarray  # float64 [nodes]
    left: np.ndarray  # int64 [nodes]
    right: np.ndarray  # int64 [nodes]
    leaf: np.ndarray  # bool [nodes]
    missing_left: np.ndarray  # bool [nodes]
    value: np.ndarray  # float64 [nodes], used at leaves
    roots: np.ndarray  # int64 [trees]
    baseline: float
    n_features: int
    depth: int

    @property
    def n_trees(self) -> int:
        return len(self.roots)

    @classmethod
    def from_sklearn(cls, model, n_features: int) -> TreeEnsemble:
        """The arrays of a fitted binary ``HistGradientBoostingClassifier``."""
        predictors = getattr(model, "_predictors", None)
        baseline = np.asarray(getattr(model, "_baseline_prediction", np.nan), dtype=np.float64)
        if predictors is None or baseline.size != 1 or any(len(trees) != 1 for trees in predictors):
            raise ModelError("cannot export this scikit-learn model's trees (not a fitted binary "
                             "HistGradientBoostingClassifier of a supported scikit-learn version)")
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("feature", "threshold", "left", "right", "leaf",
                                                               "missing_left", "value")}
        roots, offset, depth = [], 0, 0
        for (tree,) in predictors:
            nodes = tree.nodes
            if np.any(nodes["is_categorical"]):
                raise ModelError("the boosted trees use categorical splits, which this exporter does not support")
            leaf = nodes["is_leaf"].astype(bool)
            roots.append(offset)
            parts["feature"].append(np.where(leaf, 0, nodes["feature_idx"]).astype(np.int64))
            parts["threshold"].append(nodes["num_threshold"].astype(np.float64))
            parts["left"].append(np.where(leaf, 0, nodes["left"]).astype(np.int64) + offset)
            parts["right"].append(np.where(leaf, 0, nodes["right"]).astype(np.int64) + offset)
            parts["leaf"].append(leaf)
            parts["missing_left"].append(nodes["missing_go_to_left"].astype(bool))
            parts["value"].append(nodes["value"].astype(np.float64))
            depth = max(depth, int(nodes["depth"].max()))
            offset += len(nodes)
        arrays = {k: np.concatenate(v) for k, v in parts.items()}
        return cls(**arrays, roots=np.asarray(roots, dtype=np.int64), baseline=float(baseline.ravel()[0]),
                   n_features=int(n_features), depth=depth)

    # ------------------------------------------------------------------------------------------ prediction
    def raw(self, x: np.ndarray) -> np.ndarray:
        """Raw scores (log-odds of class 1) of rows ``x [n, n_features]``."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ModelError(f"the trees read {self.n_features} features per row, got an array of shape {x.shape}")
        out = np.full(len(x), self.baseline)
        for start in range(0, len(x), _CHUNK):
            part = x[start: start + _CHUNK]
            node = np.broadcast_to(self.roots, (len(part), self.n_trees)).copy()
            rows = np.arange(len(part))[:, None]
            for _ in range(self.depth):
                at_leaf = self.leaf[node]
                if at_leaf.all():
                    break
                value = part[rows, self.feature[node]]
                go_left = np.where(np.isnan(value), self.missing_left[node], value <= self.threshold[node])
                node = np.where(at_leaf, node, np.where(go_left, self.left[node], self.right[node]))
            out[start: start + len(part)] += self.value[node].sum(axis=1)
        return out

    def probability(self, x: np.ndarray) -> np.ndarray:
        """P(class 1) of every row."""
        return 1.0 / (1.0 + np.exp(-self.raw(x)))

    # ------------------------------------------------------------------------------------------ storage
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Tensors for a safetensors file (prefixed ``trees.``); ``n_features`` and ``depth`` go to JSON."""
        arrays = {k: np.ascontiguousarray(getattr(self, k)) for k in _FIELDS if k != "baseline"}
        arrays["leaf"] = arrays["leaf"].astype(np.uint8)
        arrays["missing_left"] = arrays["missing_left"].astype(np.uint8)
        arrays["baseline"] = np.asarray([self.baseline], dtype=np.float64)
        return {f"trees.{k}": v for k, v in arrays.items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], n_features: int, depth: int) -> TreeEnsemble:
        """Rebuild and check the arrays (lengths, index ranges, that every path ends at a leaf within ``depth``);
        a ModelError names what is wrong."""
        try:
            got = {k: np.asarray(arrays[f"trees.{k}"]) for k in _FIELDS}
        except KeyError as exc:
            raise ModelError(f"saved trees lack the array {exc.args[0]}") from None
        n = len(got["feature"])
        if any(got[k].ndim != 1 or len(got[k]) != n for k in _FIELDS[:7]) or got["baseline"].shape != (1,):
            raise ModelError("saved trees are malformed: node arrays of different lengths")
        trees = cls(
            feature=got["feature"].astype(np.int64), threshold=got["threshold"].astype(np.float64),
            left=got["left"].astype(np.int64), right=got["right"].astype(np.int64),
            leaf=got["leaf"].astype(bool), missing_left=got["missing_left"].astype(bool),
            value=got["value"].astype(np.float64), roots=got["roots"].astype(np.int64),
            baseline=float(got["baseline"][0]), n_features=int(n_features), depth=int(depth),
        )
        trees._check()
        return trees

    def _check(self) -> None:
        n = len(self.feature)
        split = ~self.leaf
        bad = (
            n == 0 or self.n_trees == 0 or self.depth < 0 or self.n_features < 1
            or (self.roots < 0).any() or (self.roots >= n).any()
            or (self.feature[split] < 0).any() or (self.feature[split] >= self.n_features).any()
            or ((self.left[split] < 0) | (self.left[split] >= n)).any()
            or ((self.right[split] < 0) | (self.right[split] >= n)).any()
            or not np.isfinite(self.value[self.leaf]).all() or not np.isfinite(self.baseline)
        )
        if bad:
            raise ModelError("saved trees are malformed: a node index, feature index or leaf value is out of range")
        node = self.roots.copy()
        for _ in range(self.depth):  # every path must reach a leaf within depth steps (no cycles)
            node = np.unique(np.concatenate([node[self.leaf[node]], self.left[node[~self.leaf[node]]],
                                             self.right[node[~self.leaf[node]]]]))
        if not self.leaf[node].all():
            raise ModelError(f"saved trees are malformed: a path is longer than the recorded depth {self.depth}")
