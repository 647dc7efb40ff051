"""Regime-conditional WGAN-GP (cGAN, Mirza & Osindero 2014, on the backbone of ``models/wgan_gp.py``).

Each window carries a regime label (``marketsynth.regimes``: bull / bear / crash / sideways from its return and
maximum drawdown, or the user's own labels). Both networks learn an embedding of the label (``embed_dim``
numbers per regime, separate tables for generator and critic):

* generator: the embedding is concatenated to the noise at *every* step, ``[z_t, e(y)]`` -> LSTM -> features,
  so long paths stay in their regime;
* critic: the embedding is concatenated to the features at every step, ``[x_t, e(y)]`` -> LSTM -> score, so it
  judges "is this a real *crash* window", not just "is this real".

Training is wgan-gp's step unchanged (n_critic critic updates with gradient penalty, then one generator update);
fake windows get the labels of the real batch they are compared with, and the penalty blends real and fake
windows of the same label. **Balanced sampling**: ``fit`` oversamples every regime to the size of the largest
one (each window at least once per epoch, rarer regimes' windows repeated; the remainder drawn at random without
replacement, seeded), so crash windows (10% of the data by construction) fill a quarter of every batch instead
of starving. An epoch is therefore ``n_regimes x largest regime`` windows. ``balance=False`` turns this off.

``sample(n)`` without conditions draws the labels from the training label frequencies (seeded), so unconditional
samples follow the data's mix; ``generate_from_latent`` without conditions uses the most common regime. The
fitted regime definition, the label counts and the real training windows' per-regime statistics (mean return,
maximum drawdown, crash duration) are saved with the model (``model_state.json``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from marketsynth.errors import ConfigError, ModelError
from marketsynth.models.base import GenerativeModel, ModelConfig
from marketsynth.models.wgan_gp import WGANGP, LSTMCritic, LSTMGenerator, WGANGPConfig
from marketsynth.regimes import AUTO_REGIMES, RegimeDefinition, auto_labels, bar_paths, column_labels, regime_stats


@dataclass
class CGANConfig(WGANGPConfig):
    """wgan-gp's settings plus the label embedding and the regime thresholds (``-O q_crash=0.05`` ...).

    ``regimes`` is set by the labelling (automatic: bull, bear, crash, sideways; or the label column's values).
    The ``q_*`` quantiles and the optional absolute thresholds are explained in ``marketsynth.regimes``."""

    regimes: list[str] = field(default_factory=lambda: list(AUTO_REGIMES))
    embed_dim: int = 8
    balance: bool = True  # oversample rare regimes to the largest one's size (see the module docstring)
    q_crash: float = 0.10
    q_bear: float = 0.30
    q_bull: float = 0.70
    crash_drawdown: float | None = None  # e.g. 0.05: a fall of 5% makes a crash, whatever the quantile says
    bear_return: float | None = None
    bull_return: float | None = None


def _with_label(x: torch.Tensor, embedded: torch.Tensor) -> torch.Tensor:
    """``[b, T, d]`` and ``[b, e]`` -> ``[b, T, d + e]``: the label's embedding repeated at every step."""
    return torch.cat([x, embedded[:, None, :].expand(-1, x.shape[1], -1)], dim=2)


class ConditionalGenerator(nn.Module):
    def __init__(self, cfg: CGANConfig):
        super().__init__()
        self.embed = nn.Embedding(len(cfg.regimes), cfg.embed_dim)
        self.body = LSTMGenerator(replace(cfg, latent_dim=cfg.latent_dim + cfg.embed_dim))

    def forward(self, z: torch.Tensor, labels: torch.Tensor, state=None):
        """Noise ``[b, T, latent]`` and labels ``[b]`` -> features ``[b, T, F]`` and the LSTM state."""
        return self.body(_with_label(z, self.embed(labels)), state)


class ConditionalCritic(nn.Module):
    def __init__(self, cfg: CGANConfig):
        super().__init__()
        self.embed = nn.Embedding(len(cfg.regimes), cfg.embed_dim)
        self.body = LSTMCritic(replace(cfg, n_features=cfg.n_features + cfg.embed_dim))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Windows ``[b, T, F]`` and labels ``[b]`` -> one score per window ``[b]``."""
        return self.body(_with_label(x, self.embed(labels)))


class CGAN(WGANGP):
    name = "cgan"
    Config: ClassVar[type[ModelConfig]] = CGANConfig
    conditional = True

    def __init__(self, config: CGANConfig | dict | None = None, *, device: str | torch.device = "cpu",
                 seed: int = 0):
        super().__init__(config, device=device, seed=seed)
        self.regime_options()  # bad thresholds fail here, before any data is read
        self.definition: RegimeDefinition | None = None  # how the training windows were labelled
        self.label_counts: list[int] = [0] * len(self.regimes)
        self.real_stats: dict[str, dict[str, float]] = {}  # per regime, of the real training windows

    def _build_networks(self, cfg: CGANConfig) -> tuple[nn.Module, nn.Module]:
        names = [str(name) for name in cfg.regimes]
        if len(names) < 2 or len(set(names)) != len(names):
            raise ModelError(f"cgan needs at least two distinct regimes, got {names}")
        if not (isinstance(cfg.embed_dim, int) and cfg.embed_dim >= 1):
            raise ModelError(f"cgan embed_dim must be a positive integer, got {cfg.embed_dim!r}")
        return ConditionalGenerator(cfg), ConditionalCritic(cfg)

    @property
    def regimes(self) -> list[str]:
        return [str(name) for name in self.config.regimes]

    def regime_options(self) -> dict[str, Any]:
        """The automatic labelling's settings from the config (validated)."""
        keys = ("q_crash", "q_bear", "q_bull", "crash_drawdown", "bear_return", "bull_return")
        options = {key: getattr(self.config, key) for key in keys}
        RegimeDefinition(**options)
        return options

    # ---- conditions ----------------------------------------------------------------------------------------
    def encode_conditions(self, names) -> np.ndarray:
        """Regime names -> label indices; an unknown regime (or one without training windows) is a ConfigError."""
        known = self.regimes
        out = []
        for name in names:
            if name not in known:
                raise ConfigError(f"unknown regime '{name}' for this cgan; choose one of {', '.join(known)}")
            index = known.index(name)
            if sum(self.label_counts) and not self.label_counts[index]:
                trained = [n for n, c in zip(known, self.label_counts, strict=True) if c]
                raise ConfigError(f"regime '{name}' had no training windows; choose one of {', '.join(trained)}")
            out.append(index)
        return np.asarray(out, dtype=np.int64)

    def draw_conditions(self, n: int, *, seed: int = 0) -> np.ndarray:
        """``n`` labels drawn with the training label frequencies (uniform before training), seeded."""
        counts = np.asarray(self.label_counts, dtype=np.float64)
        p = counts / counts.sum() if counts.sum() > 0 else None
        return np.random.default_rng(int(seed)).choice(len(counts), size=max(int(n), 0), p=p).astype(np.int64)

    def most_common_regime(self) -> int:
        return int(np.argmax(self.label_counts)) if sum(self.label_counts) else 0

    def _label_array(self, conditions, n: int) -> np.ndarray:
        if conditions is None:
            raise ModelError(f"cgan is conditional: pass one regime label per window (0..{len(self.regimes) - 1})")
        labels = conditions.detach().cpu().numpy() if torch.is_tensor(conditions) else np.asarray(conditions)
        labels = labels.reshape(-1) if labels.ndim == 2 and labels.shape[1] == 1 else labels
        if labels.shape != (n,):
            raise ModelError(f"cgan needs one regime label per window: {n} windows, conditions {labels.shape}")
        if labels.dtype.kind not in "iuf" or not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ModelError("cgan conditions are regime indices (integers); encode names with encode_conditions")
        if n and (labels.min() < 0 or labels.max() >= len(self.regimes)):
            raise ModelError(f"cgan regime indices must be 0..{len(self.regimes) - 1}, got {labels.min()}.."
                             f"{labels.max()}")
        return labels.astype(np.int64)

    def _condition_labels(self, conditions, n: int) -> torch.Tensor:
        return torch.as_tensor(self._label_array(conditions, n), device=self.device)

    def _generate(self, generator: nn.Module, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return generator(z, labels)[0]

    def _score(self, critic: nn.Module, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return critic(x, labels)

    # ---- training ------------------------------------------------------------------------------------------
    def fit(self, windows, conditions=None, *, epochs: int = 1, **loop_options):
        """The shared loop on the windows oversampled to balanced regimes (see the module docstring)."""
        array = np.asarray(getattr(windows, "features", windows))
        labels = self._label_array(conditions, len(array))
        self.label_counts = np.bincount(labels, minlength=len(self.regimes)).tolist()
        order = balanced_order(labels, seed=int(loop_options.get("seed", 0))) if self.config.balance else None
        if order is not None:
            array, labels = array[order], labels[order]
        return super().fit(array, labels, epochs=epochs, **loop_options)

    # ---- generation ----------------------------------------------------------------------------------------
    def sample(self, n: int, conditions: np.ndarray | None = None, *, seed: int = 0, length: int | None = None,
               temperature: float = 1.0) -> np.ndarray:
        """As wgan-gp's, for the given labels; without them, labels drawn with the training frequencies."""
        if conditions is None:
            conditions = self.draw_conditions(n, seed=seed)
        return super().sample(n, conditions, seed=seed, length=length, temperature=temperature)

    def generate_from_latent(self, z: torch.Tensor, conditions: np.ndarray | None = None) -> np.ndarray:
        if conditions is None:
            conditions = np.full(len(z), self.most_common_regime(), dtype=np.int64)
        return super().generate_from_latent(z, conditions)

    # ---- persistence ---------------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {"definition": self.definition.to_dict() if self.definition is not None else None,
                "label_counts": list(self.label_counts), "real_stats": self.real_stats}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        definition = state.get("definition")
        self.definition = RegimeDefinition.from_dict(definition) if definition else None
        self.label_counts = [int(c) for c in state.get("label_counts", [0] * len(self.regimes))]
        self.real_stats = dict(state.get("real_stats", {}))

    def describe_regimes(self) -> list[str]:
        """Lines for the CLI: how windows were labelled and how many got each label."""
        how = self.definition.describe() if self.definition is not None else "labels given by the caller"
        counts = ", ".join(f"{name} {count}" for name, count in zip(self.regimes, self.label_counts, strict=True))
        return [f"regimes: {how}", f"training windows per regime: {counts}"]


def balanced_order(labels: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Indices that give every present label as many windows as the largest one: each window ``k // c`` times
    plus ``k % c`` of its label's windows drawn without replacement (``k`` the largest count, ``c`` its own)."""
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng([int(seed), 1009])
    counts = np.bincount(labels)
    target = int(counts.max()) if len(counts) else 0
    parts = []
    for label, count in enumerate(counts):
        if count == 0:
            continue
        members = np.flatnonzero(labels == label)
        parts += [np.tile(members, target // count), rng.choice(members, target % count, replace=False)]
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def label_training_windows(model: GenerativeModel, bars, starts: np.ndarray, *, bar_labels=None,
                           column: str | None = None) -> tuple[GenerativeModel, np.ndarray]:
    """Label the training windows (rows ``s .. s + seq_len - 1`` of ``bars`` for each start ``s``) automatically,
    or from per-bar labels; attach the definition, counts and the real windows' per-regime statistics to the
    model. A fresh model whose regime list differs from the labels' is rebuilt with that list (same seed); a
    resumed one relabels with its saved definition. Returns (model, label indices)."""
    seq_len = int(model.config.seq_len)
    paths = bar_paths(bars, starts, seq_len)
    definition = getattr(model, "definition", None)
    if definition is not None:  # resuming: the saved thresholds label the same windows the same way
        if (definition.method == "column") != (bar_labels is not None) or definition.column != column:
            saved = f"--label-column {definition.column}" if definition.method == "column" else "automatic labels"
            raise ModelError(f"this checkpoint was trained with {saved}; resume it the same way")
        if definition.method == "column":
            labels = column_labels(bar_labels, starts, seq_len, column, definition.names)[1]
        else:
            labels = definition.label(paths)
    else:
        if bar_labels is None:
            definition, labels = auto_labels(paths, **model.regime_options())
        else:
            definition, labels = column_labels(bar_labels, starts, seq_len, column)
        if list(definition.names) != model.regimes:
            config = {**model.config.to_dict(), "regimes": list(definition.names)}
            model = type(model)(config, device=model.device, seed=model.seed)
        model.definition = definition
    model.label_counts = np.bincount(labels, minlength=len(model.regimes)).tolist()
    model.real_stats = regime_stats(paths, labels, model.regimes)
    return model, labels
