"""Watching a run: one-line warnings when training goes wrong, and the ``diversity``/``val_w1`` history columns.

Warnings (``TrainingWarning``, one line each, once per kind): the discriminator wins for several epochs, a loss
explodes, or samples collapse (their spread across a fixed batch falls far below the data's).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from marketsynth.models.base import GenerativeModel

_WIN_EPOCHS = 3  # consecutive epochs the discriminator must win before a warning
_COLLAPSE_RATIO, _COLLAPSE_EPOCHS = 0.1, 2  # sample spread below 10% of the data's for 2 epochs
_EXPLODE_FACTOR, _EXPLODE_FLOOR = 20.0, 20.0  # |watched loss| above 20x its first value (and above 20)
_MONITOR_SAMPLES = 64


class TrainingWarning(UserWarning):
    """Training is going wrong in a way the user can act on."""


class Monitor:
    """Warns once per kind of trouble; also adds ``diversity`` and ``val_w1`` columns to each history row."""

    def __init__(self, model: GenerativeModel, data: torch.Tensor, seed: int, epochs: int):
        self.model, self.seed, self.epochs = model, int(seed) + 1, epochs
        subset = data[torch.linspace(0, len(data) - 1, min(len(data), 1024)).long()].cpu().numpy()
        self.data_spread = float(subset.std(axis=0).mean())
        self.wins = self.collapsed = 0
        self.peak_diversity = 0.0
        self.g_first: float | None = None
        self.warned: list[str] = []

    def state(self) -> dict[str, Any]:
        return {"wins": self.wins, "collapsed": self.collapsed, "peak_diversity": self.peak_diversity,
                "g_first": self.g_first, "warned": self.warned}

    def load_state(self, state: dict[str, Any]) -> None:
        self.wins, self.collapsed = int(state.get("wins", 0)), int(state.get("collapsed", 0))
        self.peak_diversity = float(state.get("peak_diversity", 0.0))
        self.g_first, self.warned = state.get("g_first"), list(state.get("warned", []))

    def check(self, row: dict[str, Any], val: torch.Tensor | None) -> dict[str, float]:
        extra: dict[str, float] = {}
        epoch = row["epoch"]
        self.wins = self.wins + 1 if self.model.discriminator_wins(row) else 0
        if self.wins >= _WIN_EPOCHS:
            self._warn("wins", f"epoch {epoch}: the discriminator has separated real from fake for {self.wins} "
                               "epochs, so the generator learns nothing; try a lower --disc-lr, a higher --gen-lr "
                               "or a smaller discriminator")
        key = self.model.watch_loss
        if key in row:
            value = abs(float(row[key]))
            self.g_first = value if self.g_first is None else self.g_first
            if value > max(_EXPLODE_FLOOR, _EXPLODE_FACTOR * self.g_first):
                self._warn("explode", f"epoch {epoch}: {key} has exploded to {row[key]:.4g} (first epoch "
                                      f"{self.g_first:.4g}); training is diverging: try lower learning rates "
                                      "(--gen-lr/--disc-lr) or a larger --batch-size")
        if "g_loss" in row:  # the generator is trained adversarially this epoch (not a pre-training phase)
            samples = self.model.sample(_MONITOR_SAMPLES, seed=self.seed)
            ratio = float(np.std(samples, axis=0).mean()) / max(self.data_spread, 1e-12)
            extra["diversity"] = round(ratio, 6)
            self.collapsed = self.collapsed + 1 if ratio < _COLLAPSE_RATIO else 0
            self.peak_diversity = max(self.peak_diversity, ratio)
            # A fresh generator often starts with little spread and grows it; warn when the spread fell from a
            # healthy level (collapse) or never grew by half-way through the run
            fell = self.peak_diversity >= 3 * _COLLAPSE_RATIO
            if self.collapsed >= _COLLAPSE_EPOCHS and (fell or epoch >= max(5, self.epochs // 2)):
                self._warn("collapse", f"epoch {epoch}: samples have collapsed: their spread is {ratio:.1%} of "
                                       "the data's (mode collapse, or a generator that never learnt the spread); "
                                       f"try a lower --gen-lr, more epochs or data, another --seed"
                                       f"{self.model.collapse_hint}")
        if val is not None:
            extra.update(self.model.validation_losses(val))  # e.g. glow's held-out NLL next to its baseline's
            samples = self.model.sample(min(len(val), 256), seed=self.seed)
            extra["val_w1"] = round(marginal_w1(samples, val.cpu().numpy()), 6)
        self.model.train(True)
        return extra

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self.warned:
            self.warned.append(kind)
            warnings.warn(message, TrainingWarning, stacklevel=4)


def marginal_w1(a: np.ndarray, b: np.ndarray, quantiles: int = 200) -> float:
    """Mean over features of the 1-D Wasserstein-1 distance between the values of ``a`` and ``b`` ``[..., F]``."""
    q = (np.arange(quantiles) + 0.5) / quantiles
    a2, b2 = np.asarray(a, np.float64).reshape(-1, a.shape[-1]), np.asarray(b, np.float64).reshape(-1, b.shape[-1])
    return float(np.mean(np.abs(np.quantile(a2, q, axis=0) - np.quantile(b2, q, axis=0))))
