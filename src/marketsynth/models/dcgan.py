"""DCGAN for candle windows: the project's seed architecture, made to work for any window length.

Generator: Dense(latent -> 256 * L0) -> reshape [256, L0] -> BatchNorm + LeakyReLU -> ConvTranspose1D
256 -> 128 -> 64 -> 32 (kernel 4, stride 2, padding 1; each doubles the length, each with BatchNorm + LeakyReLU)
-> Conv1D(32 -> features, kernel 3) -> Tanh. With three upsamplings the output has ``8 * L0`` steps; the seed
assumed ``L`` divisible by 8 (``L0 = L / 8``). Here ``L0 = ceil(L / 8)`` and the output is cropped to its first
``L`` steps, so any ``seq_len`` works and multiples of 8 get exactly the seed's network.

Discriminator: Conv1D features -> 64 -> 128 -> 256 -> 512 (kernel 4, stride 2), each with LeakyReLU and
Dropout(0.3), then Dense(1) on the flattened features. Padding is 1 (the length halves) while the length is at
least 2 and 2 once it reaches 1 (the length stays 1), so short windows still fit; the flatten size is computed.

Training: one discriminator step (real labels smoothed to 0.9, fake labels 0.1, BCE on logits) then one
generator step (non-saturating BCE against 1.0: the smoothing is one-sided, on the discriminator only); Adam
2e-4, betas (0.5, 0.999). The seed's tanh output needs features scaled to [-1, 1] (``minmax``, or
``quantile-uniform``); new runs read rank-Gaussian features (``quantile-normal``: each feature through its
empirical CDF, so exact atoms such as open == previous close are reachable) and replace the tanh by a
BatchNorm without affine parameters (``output_norm``: N(0, 1) marginals from the first step), with ``step_noise``
noise numbers per step added before it.
Long paths (``sample(length > seq_len)``) chain independent windows; see ``marketsynth.generation``.

Daily cycle (``season``, set by ``configure`` for intraday bars): the generator also reads the sine and cosine
of its window's start time of day next to the latent code, the discriminator those of every step next to the
features (``GenerativeModel.day_clock``); sampled windows start at uniformly drawn times unless given
(``sample(n, conditions=start_positions)``), chained windows continue the clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from marketsynth.errors import ModelError
from marketsynth.models.base import GenerativeModel, ModelConfig, with_clock

_SAMPLE_CHUNK = 4096  # windows per generator forward when sampling (bounds memory; results do not depend on it)


@dataclass
class DCGANConfig(ModelConfig):
    """Defaults are the seed's; ``gen_channels``/``disc_channels`` shrink the nets (tests, tiny data)."""

    gen_channels: list[int] = field(default_factory=lambda: [256, 128, 64, 32])
    disc_channels: list[int] = field(default_factory=lambda: [64, 128, 256, 512])
    leaky_slope: float = 0.2
    dropout: float = 0.3
    real_label: float = 0.9
    fake_label: float = 0.1
    beta1: float = 0.5
    beta2: float = 0.999
    season: int = 0  # bars per day read as a time-of-day clock (set by ``configure``); 0: no daily cycle
    step_noise: int = 0  # noise numbers per step added before the output layer (``Generator``); ``configure``: 4
    output_norm: bool = False  # a BatchNorm without affine parameters instead of the tanh (rank-Gaussian features)


class Generator(nn.Module):
    def __init__(self, cfg: DCGANConfig):
        super().__init__()
        channels = list(cfg.gen_channels)
        self.seq_len, self.start_channels = cfg.seq_len, channels[0]
        self.start_len = math.ceil(cfg.seq_len / 2 ** (len(channels) - 1))
        self.latent_dim, self.step_noise = cfg.latent_dim, cfg.step_noise
        self.project = nn.Linear(cfg.latent_dim + _clock_channels(cfg), channels[0] * self.start_len)
        layers: list[nn.Module] = [nn.BatchNorm1d(channels[0]), nn.LeakyReLU(cfg.leaky_slope)]
        for c_in, c_out in pairwise(channels):
            layers += [nn.ConvTranspose1d(c_in, c_out, kernel_size=4, stride=2, padding=1),
                       nn.BatchNorm1d(c_out), nn.LeakyReLU(cfg.leaky_slope)]
        output = nn.BatchNorm1d(cfg.n_features, affine=False) if cfg.output_norm else nn.Tanh()
        layers += [nn.Conv1d(channels[-1], cfg.n_features, kernel_size=3, padding=1), output]
        self.body = nn.Sequential(*layers)
        # Bars are nearly independent from one step to the next: per-step noise through a linear map, added
        # before the output layer, gives the untrained generator independent draws that the convolutions shape
        self.skip = nn.Linear(cfg.step_noise, cfg.n_features) if cfg.step_noise else None

    def forward(self, z: torch.Tensor, start_clock: torch.Tensor | None = None) -> torch.Tensor:
        """Codes ``[b, latent_dim + seq_len * step_noise]`` (and the start's clock ``[b, 2]``) -> windows
        ``[b, seq_len, features]``."""
        code = z[:, : self.latent_dim] if start_clock is None else torch.cat([z[:, : self.latent_dim], start_clock], 1)
        x = self.project(code).view(len(z), self.start_channels, self.start_len)
        out = self.body[:-1](x)[:, :, : self.seq_len]
        if self.skip is not None:
            noise = z[:, self.latent_dim :].reshape(len(z), self.seq_len, self.step_noise)
            out = out + self.skip(noise).transpose(1, 2)
        return self.body[-1](out).transpose(1, 2)  # tanh, or standardised per feature over batch and time


class Discriminator(nn.Module):
    def __init__(self, cfg: DCGANConfig):
        super().__init__()
        layers: list[nn.Module] = []
        c_in, length = cfg.n_features + _clock_channels(cfg), cfg.seq_len
        for c_out in cfg.disc_channels:
            padding = 1 if length >= 2 else 2
            layers += [nn.Conv1d(c_in, c_out, kernel_size=4, stride=2, padding=padding),
                       nn.LeakyReLU(cfg.leaky_slope), nn.Dropout(cfg.dropout)]
            length = (length + 2 * padding - 4) // 2 + 1
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in * length, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[b, seq_len, features]`` -> logits ``[b]``."""
        return self.head(self.features(x.transpose(1, 2)).flatten(1)).squeeze(1)


class DCGAN(GenerativeModel):
    name = "dcgan"
    default_epochs = 20
    Config: ClassVar[type[ModelConfig]] = DCGANConfig
    daily_cycle = True
    scaling = "quantile-normal"  # standardised output (``output_norm``); atoms (open == previous close) reachable
    supports_distributed = True

    def __init__(self, config: DCGANConfig | dict | None = None, *, device: str | torch.device = "cpu",
                 seed: int = 0):
        super().__init__(config, device=device, seed=seed)
        cfg = self.config
        _check_config(cfg)
        self.generator = Generator(cfg).to(self.device)
        self.discriminator = Discriminator(cfg).to(self.device)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.gen_lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.disc_lr, betas=betas)

    @classmethod
    def configure(cls, config: dict, data) -> dict:
        """Also, for new runs, per-step noise (``step_noise``) and on rank-Gaussian features the standardised
        output instead of the tanh (``output_norm``); the dataclass defaults keep the seed's network, so
        checkpoints saved before them load unchanged."""
        config = super().configure(config, data)
        config.setdefault("step_noise", 4)
        representation = data.representation
        if representation is not None and representation.scaling == "quantile-normal":
            config.setdefault("output_norm", True)
        return config

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_g, "discriminator": self.opt_d}

    # ---- training ------------------------------------------------------------------------------------------
    def train_step(self, batch: torch.Tensor, conditions: torch.Tensor | None, *, epoch: int,
                   total_epochs: int) -> dict[str, float]:
        if not self.clock_season:
            _no_conditions(conditions)
        cfg, real = self.config, batch.to(self.device, torch.float32)
        b = len(real)
        generator, discriminator = self.net("generator"), self.net("discriminator")
        clock = self.day_clock(conditions, cfg.seq_len)

        with torch.no_grad():
            fake = generator(torch.randn(b, self.code_size, device=self.device), _start(clock))
        # one forward for both halves (one DDP reduction)
        logits = discriminator(with_clock(torch.cat([real, fake]), None if clock is None else clock.repeat(2, 1, 1)))
        real_logits, fake_logits = logits[:b], logits[b:]
        d_loss = 0.5 * (_bce(real_logits, cfg.real_label) + _bce(fake_logits, cfg.fake_label))
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()

        fake = generator(torch.randn(b, self.code_size, device=self.device), _start(clock))
        g_logits = discriminator(with_clock(fake, clock))
        g_loss = _bce(g_logits, 1.0)
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item(),
                "d_real": torch.sigmoid(real_logits).mean().item(),
                "d_fake": torch.sigmoid(fake_logits).mean().item()}

    def discriminator_wins(self, row: dict[str, Any]) -> bool:
        """With smoothed labels d_loss cannot reach 0 (its floor is about 0.33), so look at D's outputs: D(x)
        near the real label and D(G(z)) near the fake label means it separates the two perfectly."""
        cfg = self.config
        d_real, d_fake = row.get("d_real"), row.get("d_fake")
        if d_real is None or d_fake is None:
            return False
        return d_real - d_fake > 0.9 * (cfg.real_label - cfg.fake_label)

    # ---- generation ----------------------------------------------------------------------------------------
    def _sample(self, n: int, conditions, *, seed: int, length: int) -> np.ndarray:
        """``n`` windows; ``length > seq_len`` chains ``ceil(length / seq_len)`` independent windows per path
        (feature space; log-return features make that a continuous price path) and crops to ``length``."""
        seq_len = self.config.seq_len
        per_path = math.ceil(length / seq_len)
        noise = self.noise_generator(seed)
        z = torch.randn(n * per_path, self.code_size, generator=noise)
        start = self.start_phases(conditions, n, seed)
        phases = None if start is None else (start[:, None] + seq_len * torch.arange(per_path)).reshape(-1)
        windows = self._generate_windows(z, phases)
        return windows.reshape(n, per_path * seq_len, -1)[:, :length]

    def sample_latent(self, n: int, *, seed: int = 0) -> torch.Tensor:
        """Gaussian codes ``[n, code_size]``; ``generate_from_latent`` of them equals ``sample(n, seed=seed)``
        (with a daily cycle: when both start at the same positions in the day)."""
        return torch.randn(n, self.code_size, generator=self.noise_generator(seed))

    @property
    def code_size(self) -> int:
        """Numbers per latent code: the window's ``latent_dim`` then ``step_noise`` for each step."""
        return self.config.latent_dim + self.config.seq_len * self.config.step_noise

    def generate_from_latent(self, z: torch.Tensor, conditions: np.ndarray | None = None) -> np.ndarray:
        """Windows from codes ``[n, code_size]``; with a daily cycle ``conditions`` are their start positions in
        the day (midnight when not given)."""
        z = torch.as_tensor(z, dtype=torch.float32)
        phases = self.check_conditions(conditions, len(z)) if conditions is not None else None
        if phases is None and self.clock_season:
            phases = np.zeros(len(z), dtype=np.int64)
        return self._generate_windows(z, None if phases is None else torch.as_tensor(phases))

    @torch.no_grad()
    def _generate_windows(self, z: torch.Tensor, phases: torch.Tensor | None) -> np.ndarray:
        if z.ndim != 2 or z.shape[1] != self.code_size:
            raise ModelError(f"latent codes must be [n, {self.code_size}], got {tuple(z.shape)}")
        was_training = self.generator.training
        self.generator.eval()  # BatchNorm uses its running statistics: a sample does not depend on its batch
        try:
            out = []
            for index in torch.arange(len(z)).split(_SAMPLE_CHUNK):
                clock = None if phases is None else self.day_clock(phases[index], 1)
                out.append(self.generator(z[index].to(self.device), _start(clock)).cpu())
        finally:
            self.generator.train(was_training)
        return torch.cat(out).numpy().astype(np.float32)


def _start(clock: torch.Tensor | None) -> torch.Tensor | None:
    """The window's start time of day (the clock's first step) the generator reads next to its code."""
    return None if clock is None else clock[:, 0]


def _clock_channels(cfg: DCGANConfig) -> int:
    return 2 if cfg.season else 0


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _check_config(cfg: DCGANConfig) -> None:
    for key in ("gen_channels", "disc_channels"):
        values = getattr(cfg, key)
        if not isinstance(values, list | tuple) or len(values) < (2 if key == "gen_channels" else 1) or not all(
                isinstance(v, int) and v > 0 for v in values):
            raise ModelError(f"dcgan {key} must be a list of positive channel counts "
                             f"({'at least 2' if key == 'gen_channels' else 'at least 1'}), got {values!r}")
    if not (isinstance(cfg.step_noise, int) and cfg.step_noise >= 0):
        raise ModelError(f"dcgan step_noise must be a whole number >= 0, got {cfg.step_noise!r}")
    if cfg.seq_len < 1 or cfg.n_features < 1 or cfg.latent_dim < 1 or cfg.batch_size < 2:
        raise ModelError("dcgan needs seq_len, n_features, latent_dim >= 1 and batch_size >= 2 (BatchNorm)")
    if not 0 <= cfg.fake_label < cfg.real_label <= 1:
        raise ModelError(f"dcgan labels need 0 <= fake_label < real_label <= 1, got {cfg.fake_label}, "
                         f"{cfg.real_label}")


def _no_conditions(conditions) -> None:
    if conditions is not None:
        raise ModelError("dcgan is unconditional; drop the conditions")
