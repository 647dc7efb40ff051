"""What a model can do beyond ``GenerativeModel``'s fit and sample, as small mixins checked with ``isinstance``.

* ``Conditional``: trained on one label per window and sampled per label (market regimes: cgan). ``sample``
  without conditions draws the labels with the training label frequencies.
* ``Likelihood``: an exact log-density of data under the model (glow), so ``marketsynth loglik`` can score bars.
* ``Temperature``: a sampling temperature with a defined meaning that *widens* the distribution (the flow's latent
  scale, the mixture components' scales, GARCH's return shocks), so a hotter run is a stress scenario. Scaling a
  GAN's noise has no such meaning (on a cgan it *lowered* VaR), so GANs are not ``Temperature`` models and refuse
  a temperature (``GenerativeModel.sample``).

Code that asks "can this model do X" (generation, risk scenarios, ``loglik``, the CLI) asks ``isinstance(model,
Temperature)`` (or ``issubclass`` on a registered class), never the model's name.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np

from marketsynth.errors import ConfigError, ModelError


class Conditional:
    """Labels per window (``regimes``, indices into that list), their training counts, and the real training
    windows' statistics per label. Subclasses set ``regimes``, ``label_counts`` and ``real_stats``."""

    regimes: list[str]
    label_counts: list[int]
    real_stats: dict[str, dict[str, float]]

    def encode_conditions(self, names) -> np.ndarray:
        """Regime names -> label indices; an unknown regime (or one without training windows) is a ConfigError."""
        known = list(self.regimes)
        counts = list(getattr(self, "label_counts", []) or [])
        out = []
        for name in names:
            if name not in known:
                raise ConfigError(f"unknown regime '{name}' for this {self.name}; choose one of {', '.join(known)}")
            index = known.index(name)
            if sum(counts) and not counts[index]:
                trained = [n for n, c in zip(known, counts, strict=True) if c]
                raise ConfigError(f"regime '{name}' had no training windows; choose one of {', '.join(trained)}")
            out.append(index)
        return np.asarray(out, dtype=np.int64)

    def draw_conditions(self, n: int, *, seed: int = 0) -> np.ndarray:
        """``n`` labels drawn with the training label frequencies (uniform before training), seeded."""
        counts = np.asarray(getattr(self, "label_counts", None) or [0] * len(self.regimes), dtype=np.float64)
        p = counts / counts.sum() if counts.sum() > 0 else None
        return np.random.default_rng(int(seed)).choice(len(counts), size=max(int(n), 0), p=p).astype(np.int64)

    def most_common_regime(self) -> int:
        counts = list(getattr(self, "label_counts", []) or [])
        return int(np.argmax(counts)) if sum(counts) else 0

    def check_conditions(self, conditions, n: int) -> np.ndarray | None:
        """One regime index per window (None: drawn later with the training frequencies); a ModelError else."""
        if conditions is None:
            return None
        return self.label_array(conditions, n)

    def label_array(self, conditions, n: int) -> np.ndarray:
        if conditions is None:
            raise ModelError(f"{self.name} is conditional: pass one regime label per window "
                             f"(0..{len(self.regimes) - 1})")
        labels = conditions.detach().cpu().numpy() if hasattr(conditions, "detach") else np.asarray(conditions)
        labels = labels.reshape(-1) if labels.ndim == 2 and labels.shape[1] == 1 else labels
        if labels.shape != (n,):
            raise ModelError(f"{self.name} needs one regime label per window: {n} windows, conditions "
                             f"{labels.shape}")
        if labels.dtype.kind not in "iuf" or not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ModelError(f"{self.name} conditions are regime indices (integers); encode names with "
                             f"encode_conditions")
        if n and (labels.min() < 0 or labels.max() >= len(self.regimes)):
            raise ModelError(f"{self.name} regime indices must be 0..{len(self.regimes) - 1}, got {labels.min()}.."
                             f"{labels.max()}")
        return labels.astype(np.int64)

    def describe_regimes(self) -> list[str]:
        """Lines for the CLI: how windows were labelled and how many got each label."""
        definition = getattr(self, "definition", None)
        how = definition.describe() if definition is not None else "labels given by the caller"
        counts = ", ".join(f"{name} {count}" for name, count in zip(self.regimes, self.label_counts, strict=True))
        return [f"regimes: {how}", f"training windows per regime: {counts}"]


class Likelihood:
    """An exact log-density of data rows under the model."""

    @abstractmethod
    def log_likelihood(self, features) -> np.ndarray:
        """Log-density of each row in nats (rows in the units the model was trained on)."""

    def nll_bits_per_dim(self, features) -> np.ndarray:
        """``-log_likelihood / (F ln 2)`` per row."""
        rows = self.log_likelihood(features)
        return -rows / (self.config.n_features * math.log(2))


class Temperature:
    """A sampling temperature ``T`` (``T = 1``: as trained) that multiplies ``temperature_scales``, which widens
    the distribution: every such model has a test that VaR and CVaR of its scenarios rise with ``T``."""

    temperature_scales: ClassVar[str]  # what T multiplies, for the stress table: "the mixture components' scales"
    zero_temperature: ClassVar[bool] = False  # True: T = 0 is allowed (a flow's latent mode)

    @classmethod
    def check_temperature(cls, temperature: Any) -> float:
        """The temperature as a float (None: 1.0); a ModelError when it is not a positive number."""
        if temperature is None:
            return 1.0
        try:
            value = float(temperature)
        except (TypeError, ValueError):
            raise ModelError(f"temperature must be a number, got {temperature!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not cls.zero_temperature):
            bound = "0 or more" if cls.zero_temperature else "positive"
            raise ModelError(f"temperature must be {bound} (1 = as trained), got {temperature}")
        return value

    def describe_temperature(self, temperature: float) -> str:
        """What a run at ``temperature`` changes, e.g. ``temperature 2: the mixture components' scales × 2``."""
        return f"temperature {temperature:g}: {self.temperature_scales} × {temperature:g}"
