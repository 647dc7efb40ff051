"""WGAN-GP (Gulrajani et al., 2017) with recurrent networks: a stable GAN baseline that generates any length.

Generator: Gaussian noise per time step ``[b, T, latent_dim]`` -> LSTM -> Linear -> features, so it runs for any
number of steps ``T`` and a long path is one continuous LSTM state (``native_long_paths``). Critic: LSTM over the
window -> Linear score per step, averaged over time (no BatchNorm: the gradient penalty is per sample).

Each ``train_step`` makes ``n_critic`` (5) critic updates on the batch (fresh noise each) minimising
``C(fake) - C(real) + lambda * (||grad C(x_hat)|| - 1)^2`` with ``x_hat`` a random blend of real and fake and
lambda = 10, then one generator update minimising ``-C(G(z))``; Adam 2e-4 with betas (0.5, 0.9). Features are
standardised (``standard`` scaling: the output layer is linear). Losses: ``critic_loss``, ``g_loss``,
``wasserstein`` (the critic's estimate E[C(real)] - E[C(fake)]) and ``gp``.

The gradient penalty differentiates the critic's output with respect to its input and then backpropagates
through that gradient (double backward). cuDNN's LSTM has no double backward, so the penalty's forward runs
with cuDNN disabled on CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from marketsynth.errors import ModelError
from marketsynth.models.base import GenerativeModel, ModelConfig

_SAMPLE_ELEMENTS = 2**20  # paths x steps per generator forward when sampling (bounds memory)


@dataclass
class WGANGPConfig(ModelConfig):
    """Noise of 32 numbers per step feeds a 2-layer LSTM of 64 units. Adam lr 2e-4 (the paper's 1e-4 leaves the
    generator's output scale growing for hundreds of steps: on 3 months of 1h BTC its samples still had 3% of the
    data's spread after 200 steps; 5e-4 reached half of it in 250)."""

    latent_dim: int = 32  # noise per time step
    gen_lr: float = 2e-4
    disc_lr: float = 2e-4
    hidden_size: int = 64
    num_layers: int = 2
    critic_hidden_size: int = 64
    critic_layers: int = 1
    gp_weight: float = 10.0
    n_critic: int = 5
    beta1: float = 0.5
    beta2: float = 0.9


class LSTMGenerator(nn.Module):
    def __init__(self, cfg: WGANGPConfig):
        super().__init__()
        self.lstm = nn.LSTM(cfg.latent_dim, cfg.hidden_size, num_layers=cfg.num_layers, batch_first=True)
        self.out = nn.Linear(cfg.hidden_size, cfg.n_features)

    def forward(self, z: torch.Tensor, state=None):
        """Noise ``[b, T, latent]`` -> features ``[b, T, F]`` and the LSTM state (to continue a path)."""
        hidden, state = self.lstm(z, state)
        return self.out(hidden), state


class LSTMCritic(nn.Module):
    def __init__(self, cfg: WGANGPConfig):
        super().__init__()
        self.lstm = nn.LSTM(cfg.n_features, cfg.critic_hidden_size, num_layers=cfg.critic_layers, batch_first=True)
        self.score = nn.Linear(cfg.critic_hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Windows ``[b, T, F]`` -> one score per window ``[b]``."""
        hidden, _ = self.lstm(x)
        return self.score(hidden).squeeze(-1).mean(dim=1)


class WGANGP(GenerativeModel):
    name = "wgan-gp"
    default_epochs = 8
    collapse_hint = ""  # the loop's mode-collapse warning suggests this model to the others
    Config: ClassVar[type[ModelConfig]] = WGANGPConfig
    scaling = "standard"
    native_long_paths = True
    supports_distributed = True
    # Both networks run under DDP. The gradient penalty's torch.autograd.grad(create_graph=True) only asks for
    # the gradient with respect to the *input*, so no parameter gradient (and no DDP hook) fires until the one
    # backward of the critic loss, which reduces each parameter once although the critic ran three forwards;
    # tests/integration/test_distributed.py checks the ranks end with identical weights (torch 2.13, gloo). Had
    # this broken, the fallback is ``ddp_exclude = ("critic",)`` plus ``self.average_gradients(self.critic)``
    # before ``opt_c.step()`` (an explicit all_reduce; see GenerativeModel). For the same reason the generator
    # step does not freeze the critic (requires_grad_(False)): DDP would wait for gradients that never come.
    watch_loss = "wasserstein"  # g_loss = -C(fake) drifts with the critic's free offset; the estimate does not

    def __init__(self, config: WGANGPConfig | dict | None = None, *, device: str | torch.device = "cpu",
                 seed: int = 0):
        super().__init__(config, device=device, seed=seed)
        cfg = self.config
        _check_config(cfg)
        generator, critic = self._build_networks(cfg)
        self.generator, self.critic = generator.to(self.device), critic.to(self.device)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.gen_lr, betas=betas)
        self.opt_c = torch.optim.Adam(self.critic.parameters(), lr=cfg.disc_lr, betas=betas)

    def _build_networks(self, cfg: WGANGPConfig) -> tuple[nn.Module, nn.Module]:
        """(generator, critic); the conditional GAN (models/cgan.py) builds label-aware ones."""
        return LSTMGenerator(cfg), LSTMCritic(cfg)

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "critic": self.critic}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_g, "critic": self.opt_c}

    # ---- training ------------------------------------------------------------------------------------------
    def train_step(self, batch: torch.Tensor, conditions: torch.Tensor | None, *, epoch: int,
                   total_epochs: int) -> dict[str, float]:
        cfg, real = self.config, batch.to(self.device, torch.float32)
        b, steps = real.shape[0], real.shape[1]
        labels = self._condition_labels(conditions, b)
        generator, critic = self.net("generator"), self.net("critic")
        sums = {"critic_loss": 0.0, "wasserstein": 0.0, "gp": 0.0}
        for _ in range(cfg.n_critic):
            with torch.no_grad():
                fake = self._generate(generator, self._noise(b, steps), labels)
            wasserstein = self._score(critic, real, labels).mean() - self._score(critic, fake, labels).mean()
            gp = self._gradient_penalty(critic, real, fake, labels)
            critic_loss = -wasserstein + cfg.gp_weight * gp
            self.opt_c.zero_grad(set_to_none=True)
            critic_loss.backward()
            self.opt_c.step()
            for key, value in (("critic_loss", critic_loss), ("wasserstein", wasserstein), ("gp", gp)):
                sums[key] += value.item() / cfg.n_critic

        fake = self._generate(generator, self._noise(b, steps), labels)
        g_loss = -self._score(critic, fake, labels).mean()  # fills the critic's gradients too; its zero_grad drops them
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        return {**sums, "g_loss": g_loss.item()}

    def _gradient_penalty(self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                          labels: torch.Tensor | None = None) -> torch.Tensor:
        eps = torch.rand(len(real), 1, 1, device=self.device)
        blend = (eps * real + (1 - eps) * fake).requires_grad_(True)
        with torch.backends.cudnn.flags(enabled=False):  # cuDNN RNNs have no double backward
            scores = self._score(critic, blend, labels)
        (grad,) = torch.autograd.grad(scores.sum(), blend, create_graph=True)
        return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()

    def _noise(self, b: int, steps: int) -> torch.Tensor:
        return torch.randn(b, steps, self.config.latent_dim, device=self.device)

    # Conditioning hooks: the unconditional model refuses conditions; models/cgan.py feeds regime labels through.
    def _condition_labels(self, conditions, n: int) -> torch.Tensor | None:
        """Conditions for ``n`` windows as a tensor on the device (None for this unconditional model)."""
        _no_conditions(conditions)
        return None

    def _generate(self, generator: nn.Module, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return generator(z)[0]

    def _score(self, critic: nn.Module, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return critic(x)

    # ---- generation ----------------------------------------------------------------------------------------
    def _sample(self, n: int, conditions, *, seed: int, length: int) -> np.ndarray:
        """``n`` paths of ``length`` steps: one LSTM run each, noise drawn per step."""
        z = torch.randn(n, length, self.config.latent_dim, generator=self.noise_generator(seed))
        return self._run_generator(z, self._condition_labels(conditions, n))

    def sample_latent(self, n: int, *, seed: int = 0) -> torch.Tensor:
        """Noise ``[n, seq_len, latent_dim]``; ``generate_from_latent`` of it equals ``sample(n, seed=seed)``."""
        return torch.randn(n, self.config.seq_len, self.config.latent_dim, generator=self.noise_generator(seed))

    @torch.no_grad()
    def generate_from_latent(self, z: torch.Tensor, conditions: np.ndarray | None = None) -> np.ndarray:
        """Noise ``[n, T, latent_dim]`` -> windows ``[n, T, F]`` (any T)."""
        return self._run_generator(z, self._condition_labels(conditions, len(z)))

    @torch.no_grad()
    def _run_generator(self, z: torch.Tensor, labels: torch.Tensor | None) -> np.ndarray:
        """The generator in eval mode over ``z`` in chunks that bound memory."""
        z = torch.as_tensor(z, dtype=torch.float32)
        if z.ndim != 3 or z.shape[2] != self.config.latent_dim or z.shape[1] < 1:
            raise ModelError(f"latent codes must be [n, steps, {self.config.latent_dim}], got {tuple(z.shape)}")
        per_chunk = max(1, _SAMPLE_ELEMENTS // z.shape[1])
        label_chunks = [None] * len(z.split(per_chunk)) if labels is None else labels.split(per_chunk)
        was_training = self.generator.training
        self.generator.eval()
        try:
            out = [self._generate(self.generator, chunk.to(self.device), chunk_labels).cpu()
                   for chunk, chunk_labels in zip(z.split(per_chunk), label_chunks, strict=True)]
        finally:
            self.generator.train(was_training)
        return torch.cat(out).numpy().astype(np.float32)


def _check_config(cfg: WGANGPConfig) -> None:
    positive = ("seq_len", "n_features", "latent_dim", "batch_size", "hidden_size", "num_layers",
                "critic_hidden_size", "critic_layers", "n_critic")
    bad = [key for key in positive if not (isinstance(getattr(cfg, key), int) and getattr(cfg, key) >= 1)]
    if bad:
        raise ModelError(f"wgan-gp settings {', '.join(bad)} must be positive integers")
    if cfg.gp_weight < 0:
        raise ModelError(f"wgan-gp gp_weight must be >= 0, got {cfg.gp_weight}")


def _no_conditions(conditions) -> None:
    if conditions is not None:
        raise ModelError("wgan-gp is unconditional; drop the conditions")
