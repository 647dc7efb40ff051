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
2e-4, betas (0.5, 0.999). Tanh output means the representation scales features to [-1, 1] (``minmax``).
Long paths (``sample(length > seq_len)``) chain independent windows; see ``marketsynth.generation``.
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
from marketsynth.models.base import GenerativeModel, ModelConfig

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


class Generator(nn.Module):
    def __init__(self, cfg: DCGANConfig):
        super().__init__()
        channels = list(cfg.gen_channels)
        self.seq_len, self.start_channels = cfg.seq_len, channels[0]
        self.start_len = math.ceil(cfg.seq_len / 2 ** (len(channels) - 1))
        self.project = nn.Linear(cfg.latent_dim, channels[0] * self.start_len)
        layers: list[nn.Module] = [nn.BatchNorm1d(channels[0]), nn.LeakyReLU(cfg.leaky_slope)]
        for c_in, c_out in pairwise(channels):
            layers += [nn.ConvTranspose1d(c_in, c_out, kernel_size=4, stride=2, padding=1),
                       nn.BatchNorm1d(c_out), nn.LeakyReLU(cfg.leaky_slope)]
        layers += [nn.Conv1d(channels[-1], cfg.n_features, kernel_size=3, padding=1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``[b, latent]`` -> ``[b, seq_len, features]``."""
        x = self.project(z).view(len(z), self.start_channels, self.start_len)
        return self.body(x)[:, :, : self.seq_len].transpose(1, 2)


class Discriminator(nn.Module):
    def __init__(self, cfg: DCGANConfig):
        super().__init__()
        layers: list[nn.Module] = []
        c_in, length = cfg.n_features, cfg.seq_len
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
    scaling = "minmax"
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

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_g, "discriminator": self.opt_d}

    # ---- training ------------------------------------------------------------------------------------------
    def train_step(self, batch: torch.Tensor, conditions: torch.Tensor | None, *, epoch: int,
                   total_epochs: int) -> dict[str, float]:
        _no_conditions(conditions)
        cfg, real = self.config, batch.to(self.device, torch.float32)
        b = len(real)
        generator, discriminator = self.net("generator"), self.net("discriminator")

        with torch.no_grad():
            fake = generator(torch.randn(b, cfg.latent_dim, device=self.device))
        logits = discriminator(torch.cat([real, fake]))  # one forward for both halves (one DDP reduction)
        real_logits, fake_logits = logits[:b], logits[b:]
        d_loss = 0.5 * (_bce(real_logits, cfg.real_label) + _bce(fake_logits, cfg.fake_label))
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()

        g_logits = discriminator(generator(torch.randn(b, cfg.latent_dim, device=self.device)))
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
        windows = self.generate_from_latent(self.sample_latent(n * per_path, seed=seed))
        return windows.reshape(n, per_path * seq_len, -1)[:, :length]

    def sample_latent(self, n: int, *, seed: int = 0) -> torch.Tensor:
        """Gaussian codes ``[n, latent_dim]``; ``generate_from_latent`` of them equals ``sample(n, seed=seed)``."""
        return torch.randn(n, self.config.latent_dim, generator=self.noise_generator(seed))

    @torch.no_grad()
    def generate_from_latent(self, z: torch.Tensor, conditions: np.ndarray | None = None) -> np.ndarray:
        _no_conditions(conditions)
        z = torch.as_tensor(z, dtype=torch.float32)
        if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            raise ModelError(f"latent codes must be [n, {self.config.latent_dim}], got {tuple(z.shape)}")
        was_training = self.generator.training
        self.generator.eval()  # BatchNorm uses its running statistics: a sample does not depend on its batch
        try:
            out = [self.generator(chunk.to(self.device)).cpu() for chunk in z.split(_SAMPLE_CHUNK)]
        finally:
            self.generator.train(was_training)
        return torch.cat(out).numpy().astype(np.float32)


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _check_config(cfg: DCGANConfig) -> None:
    for key in ("gen_channels", "disc_channels"):
        values = getattr(cfg, key)
        if not isinstance(values, list | tuple) or len(values) < (2 if key == "gen_channels" else 1) or not all(
                isinstance(v, int) and v > 0 for v in values):
            raise ModelError(f"dcgan {key} must be a list of positive channel counts "
                             f"({'at least 2' if key == 'gen_channels' else 'at least 1'}), got {values!r}")
    if cfg.seq_len < 1 or cfg.n_features < 1 or cfg.latent_dim < 1 or cfg.batch_size < 2:
        raise ModelError("dcgan needs seq_len, n_features, latent_dim >= 1 and batch_size >= 2 (BatchNorm)")
    if not 0 <= cfg.fake_label < cfg.real_label <= 1:
        raise ModelError(f"dcgan labels need 0 <= fake_label < real_label <= 1, got {cfg.fake_label}, "
                         f"{cfg.real_label}")


def _no_conditions(conditions) -> None:
    if conditions is not None:
        raise ModelError("dcgan is unconditional; drop the conditions")
