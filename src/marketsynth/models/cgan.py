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
windows of the same label. Labels come from ``training_arrays`` (the regime list from ``configure``: the automatic
four, or the values of the user's label column). **Balanced sampling**: ``training_arrays`` oversamples every
regime to the size of the largest one (each window at least once per epoch, rarer regimes' windows repeated;
the remainder drawn at random without replacement, seeded), so crash windows (10% of the data by construction)
fill a quarter of every batch instead of starving. An epoch is therefore ``n_regimes x largest regime``
windows. ``balance=False`` turns this off.

``sample(n)`` without conditions draws the labels from the training label frequencies (seeded,
``models.capabilities.Conditional``), so unconditional samples follow the data's mix; ``generate_from_latent``
without conditions uses the most common regime. There is no sampling temperature (a ``--temperature 2`` run
lowered VaR; the crash regime is the stress scenario). The fitted regime definition, the label counts and the
real training windows' per-regime statistics (mean return, maximum drawdown, crash duration) are saved with
the model (``model_state.json``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from marketsynth.errors import ModelError
from marketsynth.models.base import ModelConfig
from marketsynth.models.capabilities import Conditional
from marketsynth.models.data import TrainingArrays, TrainingData
from marketsynth.models.wgan_gp import (
    WGANGP,
    Context,
    LSTMCritic,
    LSTMGenerator,
    WGANGPConfig,
    clock_channels,
    with_clock,
)
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
        self.body = LSTMGenerator(replace(cfg, latent_dim=cfg.latent_dim + cfg.embed_dim + clock_channels(cfg)))

    def forward(self, z: torch.Tensor, labels: torch.Tensor, state=None):
        """Noise ``[b, T, latent]`` and labels ``[b]`` -> features ``[b, T, F]`` and the LSTM state."""
        return self.body(_with_label(z, self.embed(labels)), state)


class ConditionalCritic(nn.Module):
    def __init__(self, cfg: CGANConfig):
        super().__init__()
        self.embed = nn.Embedding(len(cfg.regimes), cfg.embed_dim)
        self.body = LSTMCritic(replace(cfg, n_features=cfg.n_features + cfg.embed_dim + clock_channels(cfg)))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Windows ``[b, T, F]`` and labels ``[b]`` -> one score per window ``[b]``."""
        return self.body(_with_label(x, self.embed(labels)))


class CGAN(Conditional, WGANGP):
    name = "cgan"
    default_epochs = 8
    Config: ClassVar[type[ModelConfig]] = CGANConfig
    temperature_instead = "use --regime crash for a stress scenario"

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

    # ---- hooks: the regime list from the data, labelled and balanced windows ------------------------------------
    @classmethod
    def configure(cls, config: dict[str, Any], data: TrainingData) -> dict[str, Any]:
        """The regimes are the automatic four, or the labels the windows get from the user's label column."""
        config = super().configure(config, data)
        if data.bar_labels is None:
            config["regimes"] = list(AUTO_REGIMES)
            return config
        seq_len = int(config.get("seq_len", cls.Config.seq_len))
        starts = data.split(seq_len).train.start_index
        config["regimes"] = list(column_labels(data.bar_labels, starts, seq_len, data.label_column)[0].names)
        return config

    def training_arrays(self, data: TrainingData) -> TrainingArrays:
        """Training windows with one regime label each (``label_windows``), oversampled to balanced regimes
        unless ``balance`` is off (seeded by the model's seed, so a resumed run sees the same order)."""
        split = data.split(self.config.seq_len)
        labels = self.label_windows(data, split.train.start_index)
        windows = split.train.features
        phases = self.window_phases(data, split.train.start_index)
        conditions = labels if phases is None else np.column_stack([labels, phases])  # (label, phase) per window
        if self.config.balance:
            order = balanced_order(labels, seed=self.seed)
            windows, conditions = windows[order], conditions[order]
        return TrainingArrays(windows, conditions, val=None if split.val is None else split.val.features,
                              meta={"regimes": dict(zip(self.regimes, self.label_counts, strict=True))},
                              count=len(split.train.features))

    def label_windows(self, data: TrainingData, starts: np.ndarray) -> np.ndarray:
        """Label the windows starting at rows ``starts`` of the bars, automatically or from the per-bar labels,
        and keep the definition, the counts and the real windows' per-regime statistics. A fresh model fits the
        definition; a resumed one relabels with its saved definition. Returns the label indices."""
        seq_len = int(self.config.seq_len)
        paths = bar_paths(data.bars, starts, seq_len)
        column = data.label_column if data.bar_labels is not None else None
        if self.definition is not None:  # resuming: the saved thresholds label the same windows the same way
            if (self.definition.method == "column") != (column is not None) or self.definition.column != column:
                saved = (f"--label-column {self.definition.column}" if self.definition.method == "column"
                         else "automatic labels")
                raise ModelError(f"this checkpoint was trained with {saved}; resume it the same way")
            if column is not None:
                labels = column_labels(data.bar_labels, starts, seq_len, column, self.definition.names)[1]
            else:
                labels = self.definition.label(paths)
        else:
            if column is None:
                definition, labels = auto_labels(paths, **self.regime_options())
            else:
                definition, labels = column_labels(data.bar_labels, starts, seq_len, column)
            if list(definition.names) != self.regimes:
                raise ModelError(f"the windows are labelled {', '.join(definition.names)} but this cgan was built "
                                 f"for {', '.join(self.regimes)}; configure it from the data (CGAN.configure)")
            self.definition = definition
        self.label_counts = np.bincount(labels, minlength=len(self.regimes)).tolist()
        self.real_stats = regime_stats(paths, labels, self.regimes)
        return labels

    # ---- conditions ----------------------------------------------------------------------------------------
    def _training_conditions(self, conditions, n: int):
        """Labels ``[b]``, or with a daily cycle ``[b, 2]`` (label, start phase) per window."""
        if conditions is not None and self.clock_season and conditions.ndim == 2 and conditions.shape[1] == 2:
            return torch.as_tensor(self.label_array(conditions[:, 0], n), device=self.device), conditions[:, 1]
        return torch.as_tensor(self.label_array(conditions, n), device=self.device), None

    def _sample_context(self, conditions, n: int, steps: int, seed: int | None) -> Context:
        """Conditions are regime labels; start phases are drawn with ``seed`` (None: midnight)."""
        labels = torch.as_tensor(self.label_array(conditions, n), device=self.device)
        return Context(labels, self.day_clock(self.start_phases(None, n, seed), steps))

    def _generate(self, generator: nn.Module, z: torch.Tensor, context: Context) -> torch.Tensor:
        return generator(with_clock(self._held_noise(z), context.clock), context.labels)[0]

    def _score(self, critic: nn.Module, x: torch.Tensor, context: Context) -> torch.Tensor:
        return critic(with_clock(x, context.clock), context.labels)

    # ---- generation ----------------------------------------------------------------------------------------
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
