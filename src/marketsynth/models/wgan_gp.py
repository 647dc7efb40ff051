"""WGAN-GP (Gulrajani et al., 2017) with recurrent networks: a stable GAN baseline that generates any length.

Generator: Gaussian noise per time step ``[b, T, latent_dim]`` -> LSTM -> Linear -> features, so it runs for any
number of steps ``T`` and a long path is one continuous LSTM state (``native_long_paths``). Critic: LSTM over the
window -> Linear score per step, averaged over time (no BatchNorm: the gradient penalty is per sample).

Each ``train_step`` makes ``n_critic`` (5) critic updates on the batch (fresh noise each) minimising
``C(fake) - C(real) + lambda * (||grad C(x_hat)|| - 1)^2`` with ``x_hat`` a random blend of real and fake and
lambda = 10, then one generator update minimising ``-C(G(z))``; Adam 2e-4 with betas (0.5, 0.9). Features are
rank-Gaussian (``quantile-normal`` scaling, ``representation.quantile``: the output layer is linear). Losses:
``critic_loss``, ``g_loss``, ``wasserstein`` (the critic's estimate E[C(real)] - E[C(fake)]) and ``gp``.

Daily cycle (``season``, set by ``configure`` for intraday bars): generator and critic also read the sine and
cosine of every step's time of day (``GenerativeModel.day_clock``) next to the noise / the features; training
windows bring their first bar's position in the day, sampled paths start at a uniformly drawn one unless given
(``sample(n, conditions=start_positions)``; ``generate_from_latent`` starts at midnight unless given).

The gradient penalty differentiates the critic's output with respect to its input and then backpropagates
through that gradient (double backward). cuDNN's LSTM has no double backward, so the penalty's forward runs
with cuDNN disabled on CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn

from marketsynth.errors import ModelError
from marketsynth.models.base import GenerativeModel, ModelConfig, with_clock

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
    season: int = 0  # bars per day read as a time-of-day clock (set by ``configure``); 0: no daily cycle
    output_norm: bool = False  # standardise the output per feature (``LSTMGenerator``); ``configure`` turns it on
    noise_skip: bool = False  # a linear path from each step's noise to its output; ``configure`` turns it on
    # the last ``window_noise`` noise channels are drawn once per path and held at every step, so a window's level
    # of activity (calm or wild) is one draw instead of something the LSTM must build from independent steps;
    # ``configure`` sets a quarter of the channels for new runs (8 of 32), 0 in checkpoints saved before it
    window_noise: int = 0


class Context(NamedTuple):
    """What a batch is conditioned on: regime labels ``[b]`` (cgan) and the time-of-day clock ``[b, T, 2]``."""

    labels: torch.Tensor | None = None
    clock: torch.Tensor | None = None


def clock_channels(cfg: WGANGPConfig) -> int:
    return 2 if getattr(cfg, "season", 0) else 0


class LSTMGenerator(nn.Module):
    def __init__(self, cfg: WGANGPConfig):
        super().__init__()
        self.lstm = nn.LSTM(cfg.latent_dim, cfg.hidden_size, num_layers=cfg.num_layers, batch_first=True)
        self.out = nn.Linear(cfg.hidden_size, cfg.n_features)
        # Rank-Gaussian features are N(0, 1) per feature: a BatchNorm without affine parameters gives the output
        # those moments from the first step (running statistics when sampling), so the critic's signal goes to
        # shape and time structure instead of a slowly growing output scale
        self.norm = nn.BatchNorm1d(cfg.n_features, affine=False) if cfg.output_norm else None
        # Bars are nearly independent from one step to the next: a direct path from each step's noise makes the
        # untrained generator already give independent draws, and the LSTM learns the dependence on top of them
        self.skip = nn.Linear(cfg.latent_dim, cfg.n_features) if cfg.noise_skip else None

    def forward(self, z: torch.Tensor, state=None):
        """Noise ``[b, T, latent]`` -> features ``[b, T, F]`` and the LSTM state (to continue a path)."""
        hidden, state = self.lstm(z, state)
        out = self.out(hidden)
        if self.skip is not None:
            out = out + self.skip(z)
        if self.norm is not None:
            out = self.norm(out.transpose(1, 2)).transpose(1, 2)
        return out, state


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
    scaling = "quantile-normal"  # normal marginals, fat tails tamed, atoms expressible (representation.quantile)
    native_long_paths = True
    supports_distributed = True
    daily_cycle = True
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
        extra = clock_channels(cfg)
        return (LSTMGenerator(replace(cfg, latent_dim=cfg.latent_dim + extra)),
                LSTMCritic(replace(cfg, n_features=cfg.n_features + extra)))

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "critic": self.critic}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_g, "critic": self.opt_c}

    @classmethod
    def configure(cls, config: dict, data) -> dict:
        """Also, for new runs on the default rank-Gaussian features, the standardised output (``output_norm``) and
        the noise skip path (``noise_skip``); the dataclass defaults stay off so checkpoints saved before them
        load unchanged."""
        config = super().configure(config, data)
        representation = data.representation
        if representation is not None and representation.scaling == "quantile-normal":
            config.setdefault("output_norm", True)
            config.setdefault("noise_skip", True)
            config.setdefault("window_noise", int(config.get("latent_dim", cls.Config.latent_dim)) // 4)
        return config

    # ---- training ------------------------------------------------------------------------------------------
    def train_step(self, batch: torch.Tensor, conditions: torch.Tensor | None, *, epoch: int,
                   total_epochs: int) -> dict[str, float]:
        cfg, real = self.config, batch.to(self.device, torch.float32)
        b, steps = real.shape[0], real.shape[1]
        labels, phases = self._training_conditions(conditions, b)
        context = Context(labels, self.day_clock(phases, steps))
        generator, critic = self.net("generator"), self.net("critic")
        sums = {"critic_loss": 0.0, "wasserstein": 0.0, "gp": 0.0}
        for _ in range(cfg.n_critic):
            with torch.no_grad():
                fake = self._generate(generator, self._noise(b, steps), context)
            wasserstein = self._score(critic, real, context).mean() - self._score(critic, fake, context).mean()
            gp = self._gradient_penalty(critic, real, fake, context)
            critic_loss = -wasserstein + cfg.gp_weight * gp
            self.opt_c.zero_grad(set_to_none=True)
            critic_loss.backward()
            self.opt_c.step()
            for key, value in (("critic_loss", critic_loss), ("wasserstein", wasserstein), ("gp", gp)):
                sums[key] += value.item() / cfg.n_critic

        fake = self._generate(generator, self._noise(b, steps), context)
        g_loss = -self._score(critic, fake, context).mean()  # fills the critic's gradients; its zero_grad drops them
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        return {**sums, "g_loss": g_loss.item()}

    def _gradient_penalty(self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                          context: Context) -> torch.Tensor:
        eps = torch.rand(len(real), 1, 1, device=self.device)
        blend = (eps * real + (1 - eps) * fake).requires_grad_(True)
        with torch.backends.cudnn.flags(enabled=False):  # cuDNN RNNs have no double backward
            scores = self._score(critic, blend, context)
        (grad,) = torch.autograd.grad(scores.sum(), blend, create_graph=True)
        return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()

    def _noise(self, b: int, steps: int) -> torch.Tensor:
        return torch.randn(b, steps, self.config.latent_dim, device=self.device)

    # Conditioning hooks: this model reads only the time of day; models/cgan.py adds regime labels.
    def _training_conditions(self, conditions: torch.Tensor | None, n: int):
        """(labels, start phases) of a training batch from its conditions (``training_arrays``)."""
        if conditions is None or not self.clock_season:
            _no_conditions(conditions)
            return None, None
        return None, conditions.reshape(-1)

    def _sample_context(self, conditions, n: int, steps: int, seed: int | None) -> Context:
        """The context of ``n`` sampled paths: ``conditions`` are start phases (``check_conditions``), drawn with
        ``seed`` when missing (None: midnight)."""
        return Context(None, self.day_clock(self.start_phases(conditions, n, seed), steps))

    def _generate(self, generator: nn.Module, z: torch.Tensor, context: Context) -> torch.Tensor:
        return generator(with_clock(self._held_noise(z), context.clock))[0]

    def _held_noise(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` with its last ``window_noise`` channels held at their first step's values (see the config)."""
        k = self.config.window_noise
        if not k:
            return z
        return torch.cat([z[..., :-k], z[:, :1, -k:].expand(-1, z.shape[1], -1)], dim=-1)

    def _score(self, critic: nn.Module, x: torch.Tensor, context: Context) -> torch.Tensor:
        return critic(with_clock(x, context.clock))

    # ---- generation ----------------------------------------------------------------------------------------
    def _sample(self, n: int, conditions, *, seed: int, length: int) -> np.ndarray:
        """``n`` paths of ``length`` steps: one LSTM run each, noise drawn per step."""
        noise = self.noise_generator(seed)
        z = torch.randn(n, length, self.config.latent_dim, generator=noise)
        return self._run_generator(z, self._sample_context(conditions, n, length, seed))

    def sample_latent(self, n: int, *, seed: int = 0) -> torch.Tensor:
        """Noise ``[n, seq_len, latent_dim]``; ``generate_from_latent`` of it equals ``sample(n, seed=seed)``
        (with a daily cycle: when both start at the same positions in the day)."""
        return torch.randn(n, self.config.seq_len, self.config.latent_dim, generator=self.noise_generator(seed))

    @torch.no_grad()
    def generate_from_latent(self, z: torch.Tensor, conditions: np.ndarray | None = None) -> np.ndarray:
        """Noise ``[n, T, latent_dim]`` -> windows ``[n, T, F]`` (any T)."""
        z = torch.as_tensor(z, dtype=torch.float32)
        steps = z.shape[1] if z.ndim == 3 else 1
        return self._run_generator(z, self._sample_context(self.check_conditions(conditions, len(z)), len(z),
                                                           steps, None))

    @torch.no_grad()
    def _run_generator(self, z: torch.Tensor, context: Context) -> np.ndarray:
        """The generator in eval mode over ``z`` in chunks that bound memory."""
        z = torch.as_tensor(z, dtype=torch.float32)
        if z.ndim != 3 or z.shape[2] != self.config.latent_dim or z.shape[1] < 1:
            raise ModelError(f"latent codes must be [n, steps, {self.config.latent_dim}], got {tuple(z.shape)}")
        per_chunk = max(1, _SAMPLE_ELEMENTS // z.shape[1])
        chunks = len(z.split(per_chunk))
        labels = [None] * chunks if context.labels is None else context.labels.split(per_chunk)
        clocks = [None] * chunks if context.clock is None else context.clock.split(per_chunk)
        was_training = self.generator.training
        self.generator.eval()
        try:
            out = [self._generate(self.generator, chunk.to(self.device), Context(chunk_labels, chunk_clock)).cpu()
                   for chunk, chunk_labels, chunk_clock in zip(z.split(per_chunk), labels, clocks, strict=True)]
        finally:
            self.generator.train(was_training)
        return torch.cat(out).numpy().astype(np.float32)


def _check_config(cfg: WGANGPConfig) -> None:
    positive = ("seq_len", "n_features", "latent_dim", "batch_size", "hidden_size", "num_layers",
                "critic_hidden_size", "critic_layers", "n_critic")
    bad = [key for key in positive if not (isinstance(getattr(cfg, key), int) and getattr(cfg, key) >= 1)]
    if bad:
        raise ModelError(f"wgan-gp settings {', '.join(bad)} must be positive integers")
    if not (isinstance(cfg.window_noise, int) and 0 <= cfg.window_noise <= cfg.latent_dim):
        raise ModelError(f"wgan-gp window_noise must be an integer from 0 to latent_dim ({cfg.latent_dim}), got "
                         f"{cfg.window_noise}")
    if cfg.gp_weight < 0:
        raise ModelError(f"wgan-gp gp_weight must be >= 0, got {cfg.gp_weight}")


def _no_conditions(conditions) -> None:
    if conditions is not None:
        raise ModelError("wgan-gp is unconditional; drop the conditions")
