"""An autoregressive mixture-density GRU: each bar drawn from a learnt distribution given every bar before it.

Why a likelihood model next to the GANs
    GANs must discover volatility clustering, volume persistence and the joint shape of a candle from a
    discriminator's signal alone; a few minutes of CPU training are not enough for that (BENCHMARKS.md). Here the
    network is trained by maximum likelihood (teacher forcing), which is stable, converges in a few epochs and
    sees the whole past, so the same mechanism that gives GARCH its volatility clustering (today's spread depends
    on yesterday's moves) is learnt for every feature of the bar, volume and wicks included.

Model
    A GRU reads the previous bars ``x_<t`` (the representation's scaled features) and gives a state ``h_t``.
    The bar ``x_t`` is then drawn feature by feature: feature ``j`` follows a mixture of ``mixtures`` Gaussians
    whose weights, means and scales come from a small network of ``[h_t, x_t,0..j-1]``, so the dependence inside
    a bar (a big move has long wicks and high volume) is modelled exactly, not only through the shared state.
    A value that repeats exactly in at least ``atom_share`` of the training bars (crypto opens at the previous
    close in about half the bars, so the open gap is exactly 0; a wick is sometimes exactly 0) is an *atom*: the
    head also gives its probability, and a continuous density alone would smear it into a cloud the evaluation
    tells apart at once. The loss is the mean over features and bars of -log P(atom) for atom values and
    -log P(no atom) - log(mixture density) for the others (``nll``; nats per feature per bar).

Training data
    ``training_arrays`` takes the gap-free bar segments straight from ``TrainingData`` and cuts overlapping
    sequences of ``train_len`` bars from each (``sequences``), so the state learns from more history than one
    window of ``seq_len`` bars and no sequence crosses a time gap. Held-out data are windows of ``seq_len``
    bars, scored from the empty state (``val_nll``).

Daily cycle
    Hourly crypto volume and volatility follow the clock (on BTC 1h, mean log volume is 1 std higher at 14:00
    than at 04:00 UTC). For intraday bars ``configure`` sets ``season`` to the bars per day (from the bar times)
    and each sequence gets its first bar's position in the day; the GRU then also reads the sine and cosine of
    each bar's time of day; every feature head also reads the first three harmonics of that time directly
    (``head_clock``), so a bar's spread and volume can follow the clock without going through the state.

Sampling
    Every path starts from the empty state (no real window's), at a uniformly drawn time of day unless given,
    runs ``warmup`` bars that are thrown away (default none), then ``length`` bars are kept. Draws are
    clipped to the training range of each feature widened by ``clip_margin`` of its spread, which keeps a
    rare runaway path from feeding itself ever larger moves. ``temperature`` multiplies every mixture component's
    scale (a ``Temperature`` model: the spread of every draw widens, so VaR and CVaR rise with it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - torch's convention

from marketsynth.errors import ModelError
from marketsynth.models.base import GenerativeModel, ModelConfig
from marketsynth.models.capabilities import Temperature
from marketsynth.models.data import TrainingArrays, TrainingData
from marketsynth.representation import create_sequences
from marketsynth.timeframes import bars_per_day, position_in_day

_SAMPLE_PATHS = 8192  # paths per chunk when sampling (bounds the noise drawn at once)
_START_EVERY = 8  # the empty state's loss is scored on every 8th bar of each training sequence
_LOG_SQRT_2PI = 0.5 * float(np.log(2 * np.pi))


@dataclass
class AutoregressiveConfig(ModelConfig):
    """A 2-layer GRU of 96 units, 8 Gaussians per feature, sequences of 96 bars, Adam 2e-3 (``gen_lr``).
    ``latent_dim`` and ``disc_lr`` are unused (no latent space, no discriminator).

    ``warmup``: bars drawn and thrown away before a path's first kept bar. The empty state is trained to give
    the data's marginal distribution (see ``MixtureGRU.forward``), so 0 starts windows where the data is (and
    at the price levels it visited, with the ``log-returns-level`` representation). Long free-running paths
    drift slowly away from the data's volume and wick levels (a small bias in each step's conditional mean adds
    up over a persistent process; measured on a year of BTC 1h after 14 epochs: mean log volume -0.15 std after
    100 bars, -0.4 after 400), so a warm-up buys little."""

    gen_lr: float = 2e-3
    hidden_size: int = 96
    num_layers: int = 2
    mixtures: int = 8
    head_size: int = 64
    train_len: int = 96  # bars per training sequence (the state learns from this much history)
    warmup: int = 0  # bars generated and discarded before each sampled path
    clip_margin: float = 0.25  # samples stay within the training range widened by this share of its spread
    grad_clip: float = 1.0
    atom_share: float = 0.005  # a value repeated exactly in this share of bars is modelled as an atom
    season: int = 0  # bars per day for intraday bars (set by ``configure`` from the bar times); 0: no daily cycle
    # harmonics of the time of day read by every feature head directly, besides the GRU's clock input (``configure``
    # sets 3 for intraday bars; 0 in checkpoints made before it existed, which load unchanged)
    head_clock: int = 0


class _FeatureHead(nn.Module):
    """Mixture parameters of one feature from the state and the bar's earlier features: component logits,
    means, log scales, and the logit of the feature's atom (used only when it has one)."""

    def __init__(self, inputs: int, size: int, mixtures: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(inputs, size), nn.ReLU(), nn.Linear(size, 3 * mixtures + 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(x)
        logits, mean, log_scale = out[..., :-1].chunk(3, dim=-1)
        return logits, mean, log_scale.clamp(-7.0, 4.0), out[..., -1]


class MixtureGRU(nn.Module):
    def __init__(self, cfg: AutoregressiveConfig):
        super().__init__()
        self.season = cfg.season
        self.head_clock = cfg.head_clock if cfg.season else 0
        inputs = cfg.n_features + (2 if cfg.season else 0)  # the previous bar, and where this bar is in the day
        self.gru = nn.GRU(inputs, cfg.hidden_size, num_layers=cfg.num_layers, batch_first=True)
        context = cfg.hidden_size + 2 * self.head_clock
        self.heads = nn.ModuleList(
            _FeatureHead(context + j, cfg.head_size, cfg.mixtures) for j in range(cfg.n_features)
        )
        # Set from the training data by ``sequences`` and saved with the weights: per-feature bounds for
        # sampled values, and each feature's atom (a value that repeats exactly, e.g. open == previous close)
        self.register_buffer("low", torch.full((cfg.n_features,), -1e6))
        self.register_buffer("high", torch.full((cfg.n_features,), 1e6))
        self.register_buffer("atom", torch.zeros(cfg.n_features))
        self.register_buffer("has_atom", torch.zeros(cfg.n_features, dtype=torch.bool))

    def clock(self, phase: torch.Tensor) -> torch.Tensor:
        """``[..., 2]`` sine and cosine of each bar's position in the day (``phase`` in bars since midnight);
        nothing (``[..., 0]``) without a daily cycle."""
        if not self.season:
            return phase.new_zeros((*phase.shape, 0), dtype=torch.float32)
        angle = 2 * torch.pi * phase.float() / self.season
        return torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1)

    def context(self, state: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """What every feature head reads besides the bar's earlier features: the GRU state, and with ``head_clock``
        the first harmonics of the bar's time of day, so the spread of a bar can follow the clock directly (the
        |return| and volume peaks of the day are narrow; through the recurrent state alone the model learnt them
        at about a third of their real height)."""
        if not self.head_clock:
            return state
        angle = 2 * torch.pi * phase.float()[..., None] / self.season * torch.arange(
            1, self.head_clock + 1, device=phase.device)
        return torch.cat([state, torch.sin(angle), torch.cos(angle)], dim=-1)

    def forward(self, x: torch.Tensor, start_phase: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean negative log-likelihoods (nats per feature per bar) of windows ``[b, T, F]``: each bar given the
        bars before it (teacher forcing), and every bar under the empty state, which starts every sampled path
        (trained on all bars, the empty state's distribution is the data's marginal, so paths start where the
        data is, not only where training sequences happened to start). An atom's value scores -log P(atom), any
        other value -log P(no atom) - log(mixture density). ``start_phase`` ``[b]``: the first bar's position in
        the day."""
        shifted = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)  # bar t sees bars < t; bar 0 sees zeros
        phase = start_phase[:, None] + torch.arange(x.shape[1], device=x.device)
        state, _ = self.gru(torch.cat([shifted, self.clock(phase)], dim=-1))
        # the state before any bar is the same for every sequence; every 8th bar of the batch is an unbiased
        # sample of the marginal and costs an eighth of scoring them all
        marginal = x[:, ::_START_EVERY]
        empty = state[:, :1].expand(-1, marginal.shape[1], -1)
        return self._nll(self.context(state, phase), x), self._nll(self.context(empty, phase[:, ::_START_EVERY]),
                                                                   marginal)

    def _nll(self, state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros(())
        for j, head in enumerate(self.heads):
            logits, mean, log_scale, atom_logit = head(torch.cat([state, x[..., :j]], dim=-1))
            value = x[..., j]
            z = (value[..., None] - mean) * torch.exp(-log_scale)
            log_density = -0.5 * z**2 - log_scale - _LOG_SQRT_2PI
            log_mixture = torch.logsumexp(F.log_softmax(logits, dim=-1) + log_density, dim=-1)
            if self.has_atom[j]:
                is_atom = value == self.atom[j]
                log_mixture = torch.where(is_atom, F.logsigmoid(atom_logit), F.logsigmoid(-atom_logit) + log_mixture)
            total = total - log_mixture.mean()
        return total / len(self.heads)

    @torch.no_grad()
    def draw(self, n: int, steps: int, noise: tuple[torch.Tensor, ...], temperature: float,
             start_phase: torch.Tensor) -> torch.Tensor:
        """``n`` paths of ``steps`` bars; ``noise`` = (uniform for the atom, uniform for the component, standard
        normal), each ``[steps, n, F]``, drawn by the caller so a seed fixes the result on any device."""
        atom_draw, component_draw, normal = noise
        features = len(self.heads)
        prev = torch.zeros(n, 1, features, device=self.low.device)
        state, out = None, []
        for t in range(steps):
            hidden, state = self.gru(torch.cat([prev, self.clock(start_phase[:, None] + t)], dim=-1), state)
            hidden = self.context(hidden[:, 0], start_phase + t)
            bar = hidden.new_zeros(n, features)
            for j, head in enumerate(self.heads):
                logits, mean, log_scale, atom_logit = head(torch.cat([hidden, bar[:, :j]], dim=-1))
                cumulative = torch.softmax(logits, dim=-1).cumsum(dim=-1)
                pick = (cumulative < component_draw[t, :, j : j + 1]).sum(dim=-1, keepdim=True)
                pick = pick.clamp(max=mean.shape[-1] - 1)
                scale = temperature * torch.exp(log_scale.gather(-1, pick))
                value = (mean.gather(-1, pick) + scale * normal[t, :, j : j + 1])[:, 0].clamp(self.low[j], self.high[j])
                if self.has_atom[j]:
                    value = torch.where(atom_draw[t, :, j] < torch.sigmoid(atom_logit), self.atom[j], value)
                bar[:, j] = value
            out.append(bar)
            prev = bar[:, None]
        return torch.stack(out, dim=1)


class AutoregressiveModel(Temperature, GenerativeModel):
    name = "autoregressive"
    default_epochs = 10
    temperature_scales = "the mixture components' scales"
    Config: ClassVar[type[ModelConfig]] = AutoregressiveConfig
    scaling = "standard"
    has_latent = False
    native_long_paths = True
    supports_distributed = True
    daily_cycle = True  # its own clock (GRU input and ``head_clock``); the shared part: start positions
    watch_loss = "nll"

    def __init__(self, config: AutoregressiveConfig | dict | None = None, *, device: str | torch.device = "cpu",
                 seed: int = 0):
        super().__init__(config, device=device, seed=seed)
        cfg = self.config
        _check_config(cfg)
        self.network = MixtureGRU(cfg).to(self.device)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=cfg.gen_lr)
        self.sequence_length: int | None = None  # bars per training sequence, set by ``sequences``

    def modules(self) -> dict[str, nn.Module]:
        return {"network": self.network}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"network": self.optimizer}

    # ---- training ------------------------------------------------------------------------------------------
    @property
    def window_length(self) -> int:
        return self.sequence_length or self.config.train_len

    @classmethod
    def configure(cls, config: dict, data: TrainingData) -> dict:
        """Also ``season``: the bars per day of intraday bars (the daily cycle), and for them ``head_clock``,
        unless given."""
        config = super().configure(config, data)
        if "season" not in config:
            config["season"] = bars_per_day(data.bars["time"], data.timeframe)
        if config["season"] and "head_clock" not in config:
            config["head_clock"] = 3
        return config

    def training_arrays(self, data: TrainingData) -> TrainingArrays:
        """Sequences from the gap-free segments of the training bars (``sequences``), each with its first bar's
        position in the day; held-out windows of ``seq_len`` bars when ``val_fraction`` is set."""
        split = data.split(self.config.seq_len)
        encoded, runs = data.encoded(), data.feature_runs(split.stop)
        season = self.config.season
        phases = position_in_day(data.bars["time"].to_numpy(), season) if season else None
        arrays = self.sequences([encoded[r] for r in runs], None if phases is None else [phases[r] for r in runs])
        arrays.val = None if split.val is None else split.val.features
        return arrays

    def sequences(self, segments: list[np.ndarray], phases: list[np.ndarray] | None = None) -> TrainingArrays:
        """Sequences (stride 1) of ``train_len`` bars from gap-free segments ``[T_k, F]`` (with little data, of
        half the longest segment, at least ``seq_len``, so there are several; shorter segments are left out), and
        each one's first bar's position in the day from ``phases`` (one per bar of each segment; None without a
        daily cycle). Also sets the sampling bounds and the atoms from those bars."""
        cfg = self.config
        segments = [np.asarray(s, dtype=np.float32) for s in segments]
        if not segments or any(s.ndim != 2 or s.shape[1] != cfg.n_features for s in segments):
            raise ModelError(f"training segments must be [T, {cfg.n_features}] bars for this {self.name}, got "
                             f"{[s.shape for s in segments]}")
        if phases is not None and [len(p) for p in phases] != [len(s) for s in segments]:
            raise ModelError("pass one daily position per bar of each segment")
        longest = max(len(s) for s in segments)
        self.sequence_length = min(cfg.train_len, max(cfg.seq_len, longest // 2))
        kept = [k for k, s in enumerate(segments) if len(s) >= self.sequence_length]
        if not kept:
            raise ModelError(f"no gap-free run of {self.sequence_length} bars to train on; use more data or a "
                             f"shorter --seq-len")
        sequences = np.concatenate([create_sequences(segments[k], self.sequence_length) for k in kept])
        conditions = None
        if phases is not None:
            count = [len(segments[k]) - self.sequence_length + 1 for k in kept]
            conditions = np.concatenate([np.asarray(phases[k][:c], np.int64) for k, c in zip(kept, count,
                                                                                             strict=True)])
        bars = np.concatenate([segments[k] for k in kept])
        low, high = bars.min(axis=0), bars.max(axis=0)
        margin = self.config.clip_margin * (high - low)
        atoms = [_most_common(column) for column in bars.T]
        with torch.no_grad():
            self.network.low.copy_(torch.as_tensor(low - margin))
            self.network.high.copy_(torch.as_tensor(high + margin))
            self.network.atom.copy_(torch.as_tensor([value for value, _ in atoms]))
            self.network.has_atom.copy_(torch.as_tensor([share >= cfg.atom_share for _, share in atoms]))
        return TrainingArrays(sequences, conditions, kind="sequences")

    def train_step(self, batch: torch.Tensor, conditions: torch.Tensor | None, *, epoch: int,
                   total_epochs: int) -> dict[str, float]:
        batch = batch.to(self.device, torch.float32)
        phase = torch.zeros(len(batch), dtype=torch.long) if conditions is None else conditions.long()
        nll, start_nll = self.net("network")(batch, phase.to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        (nll + start_nll).backward()
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return {"nll": nll.item(), "start_nll": start_nll.item()}

    @torch.no_grad()
    def validation_losses(self, val: torch.Tensor) -> dict[str, float]:
        """Held-out ``val_nll`` (nats per feature per bar, each window from an empty state)."""
        self.network.eval()
        phase = torch.zeros(len(val), dtype=torch.long, device=self.device)  # validation windows carry no times
        return {"val_nll": round(float(self.network(val.to(self.device, torch.float32), phase)[0]), 6)}

    # ---- generation ----------------------------------------------------------------------------------------
    def check_conditions(self, conditions, n: int):
        """With a daily cycle, conditions are the first kept bars' positions in the day (bars since midnight)."""
        if conditions is None:
            return None
        if not self.config.season:
            raise ModelError("this autoregressive model has no daily cycle; drop the conditions")
        start = torch.as_tensor(np.asarray(conditions), dtype=torch.long).reshape(-1)
        if start.shape != (n,):
            raise ModelError(f"{start.numel()} daily positions for {n} paths; pass one per path")
        return start

    def _sample(self, n: int, conditions, *, seed: int, length: int, temperature: float) -> np.ndarray:
        """``n`` independent paths ``[n, length, F]``, each after ``warmup`` discarded bars, starting at the
        positions in the day ``conditions`` (drawn uniformly when not given)."""
        cfg = self.config
        generator, steps = self.noise_generator(seed), cfg.warmup + length
        if conditions is None:
            drawn = self.default_start_phases(n, seed)
            start = torch.zeros(n, dtype=torch.long) if drawn is None else torch.as_tensor(drawn, dtype=torch.long)
        else:
            start = conditions
        start = start - cfg.warmup  # the warm-up bars come before the first kept bar
        was_training = self.network.training
        self.network.eval()
        out = []
        try:
            for start_index in range(0, n, _SAMPLE_PATHS):
                size = min(_SAMPLE_PATHS, n - start_index)
                shape = (steps, size, cfg.n_features)
                noise = (torch.rand(shape, generator=generator).to(self.device),
                         torch.rand(shape, generator=generator).to(self.device),
                         torch.randn(shape, generator=generator).to(self.device))
                phase = start[start_index : start_index + size].to(self.device)
                out.append(self.network.draw(size, steps, noise, temperature, phase)[:, cfg.warmup :].cpu())
        finally:
            self.network.train(was_training)
        return torch.cat(out).numpy().astype(np.float32)


def _most_common(column: np.ndarray) -> tuple[float, float]:
    """The value that repeats most often in ``column`` and its share of the rows."""
    values, counts = np.unique(column, return_counts=True)
    best = int(np.argmax(counts))
    return float(values[best]), float(counts[best] / len(column))


def _check_config(cfg: AutoregressiveConfig) -> None:
    positive = ("seq_len", "n_features", "batch_size", "hidden_size", "num_layers", "mixtures", "head_size",
                "train_len")
    bad = [key for key in positive if not (isinstance(getattr(cfg, key), int) and getattr(cfg, key) >= 1)]
    if bad:
        raise ModelError(f"autoregressive settings {', '.join(bad)} must be positive integers")
    if not (isinstance(cfg.season, int) and cfg.season >= 0):
        raise ModelError(f"autoregressive season must be an integer >= 0 (bars per day), got {cfg.season}")
    if not (isinstance(cfg.head_clock, int) and cfg.head_clock >= 0):
        raise ModelError(f"autoregressive head_clock must be an integer >= 0 (harmonics), got {cfg.head_clock}")
    if not (isinstance(cfg.warmup, int) and cfg.warmup >= 0):
        raise ModelError(f"autoregressive warmup must be an integer >= 0, got {cfg.warmup}")
    if cfg.clip_margin < 0 or cfg.grad_clip <= 0:
        raise ModelError("autoregressive clip_margin must be >= 0 and grad_clip > 0")
