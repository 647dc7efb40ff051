"""``gbm``: a gradient-boosting classifier of the next move's direction from one bar's features.

Model
    scikit-learn's ``HistGradientBoostingClassifier`` (seeded with ``seed``) on the 17 per-bar features of
    ``samples.feature_table`` (the 16 of ``marketsynth.features`` plus ``log(high / low)``) of bar ``t``, predicting
    whether ``close[t + horizon] > close[t]``. Trees need no standardisation. Bars whose forward return is exactly
    0, unknown (the last ``horizon`` bars) or crosses a time gap are not trained on.

Early stopping (``early_stopping``, on by default)
    The last ``val_fraction`` of the labelled bars (in time order, after a purge of ``horizon`` bars so no
    training label overlaps them) pick the number of boosting iterations with the lowest log-loss; the model is
    then refitted on all the labelled bars with that many iterations. On data with nothing to learn that number is
    small and the probabilities stay near the base rate, so the strategy seldom trades.

Extra training material
    ``fit(bars, extra=[frame, ...])``: each extra bars frame (e.g. a synthetic path) is turned into samples on its
    own (its own warm-up, its own labels) and they are added to the training samples, never to the early-stopping
    fold, which stays real bars only.

Persistence
    The fitted trees are exported to plain arrays (``trees.TreeEnsemble``) and saved in safetensors; prediction is
    a numpy traversal of those arrays (the same code before and after loading), so nothing is pickled and loading
    runs no code. ``warmup`` is ``WARMUP_BARS + 1`` (21) bars: the first bar with features.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

from marketsynth.errors import ConfigError, DataError, ModelError
from marketsynth.trading.ml.base import DirectionStrategy, check_counts
from marketsynth.trading.ml.samples import (
    FEATURES,
    FIRST_ROW,
    bar_step,
    feature_table,
    forward_returns,
    labelled,
    purged_split,
)
from marketsynth.trading.ml.trees import TreeEnsemble

_MIN_TRAIN, _MIN_VAL = 100, 30


class GbmStrategy(DirectionStrategy):
    """Gradient-boosted trees on per-bar features → P(up) → target (see ``trading.ml.base`` for the sizing)."""

    name = "gbm"

    max_iter: int = 200
    learning_rate: float = 0.05
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    early_stopping: bool = True
    val_fraction: float = 0.2

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._trees: TreeEnsemble | None = None

    def validate(self) -> None:
        super().validate()
        if self.max_iter < 1 or self.max_leaf_nodes < 2 or self.min_samples_leaf < 1:
            raise ConfigError(f"gbm needs max_iter >= 1, max_leaf_nodes >= 2 and min_samples_leaf >= 1, got "
                              f"{self.max_iter}, {self.max_leaf_nodes}, {self.min_samples_leaf}")
        if not 0 < self.learning_rate <= 1 or self.l2_regularization < 0:
            raise ConfigError(f"gbm needs 0 < learning_rate <= 1 and l2_regularization >= 0, got "
                              f"{self.learning_rate}, {self.l2_regularization}")
        if not 0 < self.val_fraction < 0.5:
            raise ConfigError(f"gbm: val_fraction must be between 0 and 0.5, got {self.val_fraction}")

    @property
    def warmup(self) -> int:
        return FIRST_ROW + 1

    # ------------------------------------------------------------------------------------------ fitting
    def _samples(self, bars: pd.DataFrame, step: pd.Timedelta) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(bar rows, features, up?)`` of every labelled bar of one frame, in time order."""
        returns = forward_returns(bars, self.horizon, step)
        rows = labelled(returns, np.arange(FIRST_ROW, len(bars)))
        return rows, feature_table(bars)[rows - FIRST_ROW], returns[rows] > 0

    def _fit(self, bars: pd.DataFrame, extra: list[pd.DataFrame]) -> None:
        step = bar_step(bars)
        rows, x, y = self._samples(bars, step)
        extra_x, extra_y = [], []
        for i, frame in enumerate(extra):
            try:
                _, ex, ey = self._samples(frame, step)
            except DataError as exc:
                raise DataError(f"extra[{i}]: {exc}") from exc
            extra_x.append(ex)
            extra_y.append(ey)
        hint = "give it more bars (a longer training period) or a smaller val_fraction"
        check_counts("gbm", {"training": len(rows)}, {"training": _MIN_TRAIN}, hint)
        summary: dict[str, Any] = {"samples": int(len(rows)), "extra_samples": int(sum(len(e) for e in extra_y))}
        iterations = self.max_iter
        if self.early_stopping:
            fit_rows, val_rows = purged_split(rows, self.val_fraction, self.horizon)
            fit_part = np.isin(rows, fit_rows)
            val_part = np.isin(rows, val_rows)
            check_counts("gbm", {"training": int(fit_part.sum()), "validation": int(val_part.sum())},
                         {"training": _MIN_TRAIN, "validation": _MIN_VAL}, hint)
            model = self._classifier(self.max_iter)
            model.fit(*_stack(x[fit_part], y[fit_part], extra_x, extra_y))
            losses = [_log_loss(y[val_part], p[:, 1]) for p in model.staged_predict_proba(x[val_part])]
            iterations = int(np.argmin(losses)) + 1
            summary.update(val_log_loss=float(losses[iterations - 1]), val_samples=int(val_part.sum()))
        model = self._classifier(iterations).fit(*_stack(x, y, extra_x, extra_y))
        self._trees = TreeEnsemble.from_sklearn(model, len(FEATURES))
        self._step = step
        self.training_summary = {**summary, "iterations": iterations, "up_share": float(y.mean())}

    def _classifier(self, iterations: int) -> HistGradientBoostingClassifier:
        return HistGradientBoostingClassifier(
            max_iter=iterations, learning_rate=self.learning_rate, max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf, l2_regularization=self.l2_regularization,
            early_stopping=False, random_state=self.seed,
        )

    # ------------------------------------------------------------------------------------------ prediction
    def _probabilities(self, bars: pd.DataFrame, last_only: bool) -> np.ndarray:
        out = np.full(len(bars), np.nan)
        table = feature_table(bars)
        if last_only:
            out[-1] = self._trees.probability(table[-1:])[0]
        else:
            out[FIRST_ROW:] = self._trees.probability(table)
        return out

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        trees = self._trees
        return ({"features": list(FEATURES), "n_trees": trees.n_trees, "depth": trees.depth}, trees.to_arrays())

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        if list(state.get("features", [])) != list(FEATURES):
            raise ModelError("the saved gbm was fitted on other features than this version computes; fit it again")
        self._trees = TreeEnsemble.from_arrays(arrays, len(FEATURES), int(state["depth"]))


def _stack(x: np.ndarray, y: np.ndarray, extra_x: list[np.ndarray], extra_y: list[np.ndarray]):
    return np.concatenate([x, *extra_x]), np.concatenate([y, *extra_y]).astype(np.int64)


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(np.where(y, np.log(p), np.log(1 - p))))
