"""TimeGAN (Yoon, Jarrett & van der Schaar, NeurIPS 2019), after the authors' reference code
(jsyoon0823/TimeGAN).

Five GRU networks: an autoencoder (embedder X -> H, recovery H -> X~) gives a latent space where the
generator (Z -> E^) and a supervisor (H_t -> H_t+1) learn the step-to-step dynamics, and a discriminator
(H -> one logit per step) plays the adversarial game in that latent space. Latent codes keep the reference's
sigmoid (bounded, easy for the discriminator); the recovery's output layer matches the data's scaling: the
reference uses a sigmoid because its data is min-max scaled to [0, 1], but our default ``quantile-normal``
scaling (rank-Gaussian features with exact atoms, ``representation.quantile``) gives unbounded scores a sigmoid
could never reach, so the output is linear (``recovery_output="tanh"`` suits ``minmax`` scaling to [-1, 1]).
Daily cycle (``season``, set by ``configure`` for intraday bars): the generator also reads the sine and cosine
of each step's time of day next to its noise, the discriminator next to the latent codes; sampled paths start
at uniformly drawn times unless given (``sample(n, conditions=start_positions)``).

Training phases over the shared loop's epochs (``epoch`` counted from 0), see ``phase_epochs``:
    1. embedding: ``e_loss`` = 10*sqrt(MSE(X, X~)) trains embedder + recovery.
    2. supervised: ``s_loss`` = MSE(H[:, 1:], S(H)[:, :-1]) trains supervisor (+ generator, as in the
       reference, although the loss does not reach it).
    3. joint: twice per step, the generator + supervisor minimise ``g_loss = g_adv + g_sup + g_moment``
       (``g_adv`` = BCE on D(S(G(Z))) + gamma * BCE on D(G(Z)); ``g_sup`` = 100*sqrt(s_loss);
       ``g_moment`` = 100*(|std diff| + |mean diff|) over the batch per step and feature), then embedder +
       recovery minimise ``e_loss`` = 10*sqrt(MSE) + 0.1*s_loss; finally the discriminator takes one step on
       ``d_loss`` (BCE real/fake/gamma*fake_e) only when ``d_loss > 0.15``, so it does not overpower the
       generator. The same real batch serves the two generator steps (fresh noise each); the reference drew a
       new batch for each, which the shared loop's one-batch-per-step contract does not allow.
Every loss dict carries ``phase`` (0, 1, 2); ``current_phase`` holds its name for progress displays. Phases
never go back: when a run is extended (resume with more epochs) and the fractions of the new total would put an
epoch back into pre-training, it stays in the phase already reached (saved in ``extra_state``).

Noise is Gaussian per step (the reference draws U[0, 1)). There is no sampling temperature: scaling the noise
of a GAN does not widen its output in a defined way.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from marketsynth.errors import ConfigError, ModelError
from marketsynth.models.base import GenerativeModel, ModelConfig, with_clock

PHASES = ("embedding", "supervised", "joint")
_OUTPUTS = ("linear", "tanh", "sigmoid")
_BLOCK_ELEMENTS = 2**18  # paths x steps run through the GRUs at once when sampling (bounds memory)


@dataclass
class TimeGANConfig(ModelConfig):
    """Defaults follow the reference (hidden 24, 3 layers, batch 128, Adam lr 1e-3, noise dim = features).
    On CPU the GRUs are bound by per-op overhead, not size: with seq_len 24 one step takes about 0.06 s
    (embedding), 0.03 s (supervised) and 0.6-0.9 s (joint: ~100 GRU layer passes) on one shared core, so a joint
    epoch over a year of 1h windows (~70 batches of 128) takes under a minute; hidden size is nearly free,
    each layer is not (``num_layers=2`` is about a third faster). The reference runs three phases of equal
    length; here the autoencoder and supervisor get a quarter of the epochs each (they converge in a few
    thousand steps) and the harder adversarial phase the remaining half. ``embedding_epochs`` /
    ``supervised_epochs`` fix the phase lengths in epochs instead, independent of the total, so a run can be
    extended with resume and keep its phases."""

    latent_dim: int = 5  # noise dim per step
    batch_size: int = 128
    gen_lr: float = 1e-3  # generator + supervisor (phases 2 and 3)
    disc_lr: float = 1e-3
    embed_lr: float = 1e-3  # embedder + recovery (phases 1 and 3)
    hidden_dim: int = 24
    num_layers: int = 3
    recovery_output: str = "linear"
    embedding_fraction: float = 0.25
    supervised_fraction: float = 0.25
    embedding_epochs: int | None = None
    supervised_epochs: int | None = None
    gamma: float = 1.0  # weight of the adversarial loss on G(Z) directly (without the supervisor)
    sup_weight: float = 100.0
    moment_weight: float = 100.0
    d_threshold: float = 0.15
    season: int = 0  # bars per day read as a time-of-day clock (set by ``configure``); 0: no daily cycle


class _RecurrentNet(nn.Module):
    """GRU stack + per-step linear head; ``forward`` takes and returns the GRU state to continue paths."""

    def __init__(self, n_in: int, hidden: int, layers: int, n_out: int, activation: str):
        super().__init__()
        self.rnn = nn.GRU(n_in, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, n_out)
        self.activation = activation

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, state = self.rnn(x, state)
        y = self.head(out)
        if self.activation == "sigmoid":
            y = torch.sigmoid(y)
        elif self.activation == "tanh":
            y = torch.tanh(y)
        return y, state


class TimeGAN(GenerativeModel):
    name = "timegan"
    default_epochs = 30
    Config: ClassVar[type[ModelConfig]] = TimeGANConfig
    daily_cycle = True
    scaling = "quantile-normal"  # normal marginals, fat tails tamed, atoms expressible (representation.quantile)
    native_long_paths = True  # the GRUs run for any number of steps, carrying their state
    # Under torchrun no network is DDP-wrapped: ``_step`` averages each optimiser's gradients explicitly.
    supports_distributed = True
    ddp_exclude = ("embedder", "recovery", "generator", "supervisor", "discriminator")

    def __init__(
        self, config: TimeGANConfig | dict | None = None, *, device: str | torch.device = "cpu", seed: int = 0
    ):
        super().__init__(config, device=device, seed=seed)
        cfg = self.config
        _check_config(cfg)
        hid, layers, feats = cfg.hidden_dim, cfg.num_layers, cfg.n_features
        self.embedder = _RecurrentNet(feats, hid, layers, hid, "sigmoid").to(self.device)
        self.recovery = _RecurrentNet(hid, hid, layers, feats, cfg.recovery_output).to(self.device)
        clock = 2 if cfg.season else 0  # the time-of-day channels generator and discriminator also read
        self.generator = _RecurrentNet(cfg.latent_dim + clock, hid, layers, hid, "sigmoid").to(self.device)
        self.supervisor = _RecurrentNet(hid, hid, max(1, layers - 1), hid, "sigmoid").to(self.device)
        self.discriminator = _RecurrentNet(hid + clock, hid, layers, 1, "linear").to(self.device)
        autoencoder = [*self.embedder.parameters(), *self.recovery.parameters()]
        dynamics = [*self.generator.parameters(), *self.supervisor.parameters()]
        self._optimizers = {
            "embedding": torch.optim.Adam(autoencoder, lr=cfg.embed_lr),
            "supervised": torch.optim.Adam(dynamics, lr=cfg.gen_lr),
            "generator": torch.optim.Adam(dynamics, lr=cfg.gen_lr),
            "embedder": torch.optim.Adam(autoencoder, lr=cfg.embed_lr),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=cfg.disc_lr),
        }
        self.current_phase = PHASES[0]
        self._clock: torch.Tensor | None = None  # the time-of-day clock of the batch being trained on

    def modules(self) -> dict[str, nn.Module]:
        return {
            "embedder": self.embedder,
            "recovery": self.recovery,
            "generator": self.generator,
            "supervisor": self.supervisor,
            "discriminator": self.discriminator,
        }

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return dict(self._optimizers)

    def extra_state(self) -> dict[str, str]:
        return {"current_phase": self.current_phase}

    def load_extra_state(self, state: dict) -> None:
        phase = state.get("current_phase", PHASES[0])
        if phase not in PHASES:
            raise ModelError(
                f"the timegan checkpoint names an unknown phase '{phase}'; one of {', '.join(PHASES)}"
            )
        self.current_phase = phase

    # ---- phases --------------------------------------------------------------------------------------------
    def phase_epochs(self, total_epochs: int) -> tuple[int, int, int]:
        """Epochs of (embedding, supervised, joint). From fractions (rounded down), each phase with a non-zero
        fraction gets at least one epoch and the joint phase keeps at least one when ``total_epochs >= 3``;
        with fewer epochs there is only the joint phase (it trains every network). Explicit epoch counts
        win."""
        cfg = self.config
        emb = math.floor(total_epochs * cfg.embedding_fraction)
        sup = math.floor(total_epochs * cfg.supervised_fraction)
        if cfg.embedding_epochs is not None or cfg.supervised_epochs is not None:
            emb = min(emb if cfg.embedding_epochs is None else cfg.embedding_epochs, total_epochs)
            sup = min(sup if cfg.supervised_epochs is None else cfg.supervised_epochs, total_epochs - emb)
        elif total_epochs >= 3:
            emb = min(max(int(cfg.embedding_fraction > 0), emb), total_epochs - 2)
            sup = min(max(int(cfg.supervised_fraction > 0), sup), total_epochs - 1 - emb)
        else:
            emb = sup = 0
        return emb, sup, total_epochs - emb - sup

    def phase_of(self, epoch: int, total_epochs: int) -> str:
        emb, sup, _ = self.phase_epochs(total_epochs)
        return PHASES[0] if epoch < emb else PHASES[1] if epoch < emb + sup else PHASES[2]

    # ---- training ------------------------------------------------------------------------------------------
    def train_step(
        self, batch: torch.Tensor, conditions: torch.Tensor | None, *, epoch: int, total_epochs: int
    ) -> dict[str, float]:
        if not self.clock_season:
            _no_conditions(conditions)
        x = torch.as_tensor(batch, dtype=torch.float32, device=self.device)
        self._clock = self.day_clock(conditions, x.shape[1])
        reached = max(PHASES.index(self.phase_of(epoch, total_epochs)), PHASES.index(self.current_phase))
        self.current_phase = PHASES[reached]
        if self.current_phase == "embedding":
            return self._embedding_step(x)
        if self.current_phase == "supervised":
            return self._supervised_step(x)
        return self._joint_step(x)

    def _embedding_step(self, x: torch.Tensor) -> dict[str, float]:
        h, _ = self.embedder(x)
        rmse = torch.sqrt(F.mse_loss(self.recovery(h)[0], x))
        self._step(self._optimizers["embedding"], 10 * rmse)
        return {"phase": 0.0, "e_loss": 10 * rmse.item(), "recon_rmse": rmse.item()}

    def _supervised_step(self, x: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            h, _ = self.embedder(x)
        s_loss = self._supervised_loss(h)
        self._step(self._optimizers["supervised"], s_loss)
        return {"phase": 1.0, "s_loss": s_loss.item()}

    def _joint_step(self, x: torch.Tensor) -> dict[str, float]:
        """Networks a loss does not train are frozen (no parameter gradients computed for them), and a network
        applied to two inputs runs once on their concatenation: the step is bound by per-op overhead."""
        cfg, b = self.config, len(x)
        for _ in range(2):
            with torch.no_grad():
                h, _ = self.embedder(x)
            e_hat, _ = self.generator(with_clock(self._noise(b, x.shape[1]), self._clock))
            with _frozen(self.recovery, self.discriminator):
                both, _ = self.supervisor(torch.cat([e_hat, h]))
                h_hat, h_next = both[:b], both[b:]
                x_hat, _ = self.recovery(h_hat)
                logits, _ = self.discriminator(with_clock(torch.cat([h_hat, e_hat]), self._repeat_clock(2)))
            g_adv = _bce(logits[:b], 1.0) + cfg.gamma * _bce(logits[b:], 1.0)
            g_sup = cfg.sup_weight * torch.sqrt(F.mse_loss(h_next[:, :-1], h[:, 1:]))
            g_moment = cfg.moment_weight * _moment_loss(x_hat, x)
            g_loss = g_adv + g_sup + g_moment
            self._step(self._optimizers["generator"], g_loss)

            h, _ = self.embedder(x)
            rmse = torch.sqrt(F.mse_loss(self.recovery(h)[0], x))
            with _frozen(self.supervisor):
                e_loss = 10 * rmse + 0.1 * self._supervised_loss(h)
            self._step(self._optimizers["embedder"], e_loss)

        with torch.no_grad():
            h, _ = self.embedder(x)
            e_hat, _ = self.generator(with_clock(self._noise(b, x.shape[1]), self._clock))
            h_hat, _ = self.supervisor(e_hat)
        logits, _ = self.discriminator(with_clock(torch.cat([h, h_hat, e_hat]), self._repeat_clock(3)))
        d_loss = _bce(logits[:b], 1.0) + _bce(logits[b : 2 * b], 0.0) + cfg.gamma * _bce(logits[2 * b :], 0.0)
        if self.mean_over_ranks(d_loss).item() > cfg.d_threshold:  # the same decision on every rank
            self._step(self._optimizers["discriminator"], d_loss)
        return {
            "phase": 2.0,
            "g_loss": g_loss.item(),
            "g_adv": g_adv.item(),
            "g_sup": g_sup.item(),
            "g_moment": g_moment.item(),
            "e_loss": e_loss.item(),
            "recon_rmse": rmse.item(),
            "d_loss": d_loss.item(),
        }

    def _step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        """Backward and step; under torchrun the gradients are first averaged over the ranks explicitly
        (DDP's hooks do not fit networks that run several times per step and are frozen in between)."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.average_gradients(p for group in optimizer.param_groups for p in group["params"])
        optimizer.step()

    def _supervised_loss(self, h: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.supervisor(h)[0][:, :-1], h[:, 1:])

    def _repeat_clock(self, times: int) -> torch.Tensor | None:
        """The batch's clock for ``times`` stacked copies of the batch (None without a daily cycle)."""
        return None if self._clock is None else self._clock.repeat(times, 1, 1)

    def _noise(self, n: int, steps: int) -> torch.Tensor:
        """Noise from the global RNG, which the shared loop seeds and checkpoints (exact resume)."""
        return torch.randn(n, steps, self.config.latent_dim, device=self.device)

    # ---- generation ----------------------------------------------------------------------------------------
    def _sample(self, n: int, conditions, *, seed: int, length: int) -> np.ndarray:
        """Noise -> generator -> supervisor -> recovery for ``length`` steps. Noise is drawn ``seq_len`` steps
        at a time, so a longer path with the same seed starts exactly like a shorter one."""
        generator, chunk = self.noise_generator(seed), self.config.seq_len
        noise = [torch.randn(n, chunk, self.config.latent_dim, generator=generator)[:, : length - start]
                 for start in range(0, length, chunk)]
        return self._decode(iter(noise), n, self.start_phases(conditions, n, seed))

    def sample_latent(self, n: int, *, seed: int = 0) -> torch.Tensor:
        """Noise ``[n, seq_len, latent_dim]``; ``generate_from_latent`` of it equals ``sample``."""
        return torch.randn(
            n, self.config.seq_len, self.config.latent_dim, generator=self.noise_generator(seed)
        )

    def generate_from_latent(self, z: torch.Tensor, conditions: np.ndarray | None = None) -> np.ndarray:
        """Windows from noise; with a daily cycle ``conditions`` are their start positions in the day (midnight
        when not given)."""
        z = torch.as_tensor(z, dtype=torch.float32)
        if z.ndim != 3 or z.shape[2] != self.config.latent_dim:
            raise ModelError(
                f"latent codes must be [n, steps, {self.config.latent_dim}], got {tuple(z.shape)}"
            )
        phases = self.check_conditions(conditions, len(z))
        if phases is None and self.clock_season:
            phases = np.zeros(len(z), dtype=np.int64)
        return self._decode(iter(z.split(self.config.seq_len, dim=1)), len(z),
                            None if phases is None else torch.as_tensor(phases))

    @torch.no_grad()
    def _decode(self, noise_chunks: Iterator[torch.Tensor], n: int, phases: torch.Tensor | None = None) -> np.ndarray:
        """Run the three GRUs over the noise in blocks of chunks, carrying their states across blocks; with a
        daily cycle each chunk gets the clock of its steps (paths starting at ``phases``)."""
        per_block = max(1, _BLOCK_ELEMENTS // (n * self.config.seq_len))
        states: list[torch.Tensor | None] = [None, None, None]
        out, block = [], []
        done = 0
        for z in noise_chunks:
            if phases is not None:
                z = with_clock(z, self.day_clock(phases + done, z.shape[1]).cpu())
            done += z.shape[1]
            block.append(z)
            if len(block) == per_block:
                out.append(self._run_block(block, states))
                block = []
        if block:
            out.append(self._run_block(block, states))
        return torch.cat(out, dim=1).numpy().astype(np.float32)

    def _run_block(self, block: list[torch.Tensor], states: list[torch.Tensor | None]) -> torch.Tensor:
        y = torch.cat(block, dim=1).to(self.device)
        for k, net in enumerate((self.generator, self.supervisor, self.recovery)):
            y, states[k] = net(y, states[k])
        return y.cpu()




@contextmanager
def _frozen(*nets: nn.Module) -> Iterator[None]:
    """Gradients still flow through ``nets`` to earlier networks, but not into their own parameters."""
    params = [p for net in nets for p in net.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _moment_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """|std difference| + |mean difference| over the batch, averaged over steps and features (reference)."""
    std_fake = torch.sqrt(fake.var(dim=0, unbiased=False) + 1e-6)
    std_real = torch.sqrt(real.var(dim=0, unbiased=False) + 1e-6)
    return (std_fake - std_real).abs().mean() + (fake.mean(dim=0) - real.mean(dim=0)).abs().mean()


def _check_config(cfg: TimeGANConfig) -> None:
    if cfg.recovery_output not in _OUTPUTS:
        raise ConfigError(
            f"unknown recovery_output '{cfg.recovery_output}'; use one of {', '.join(_OUTPUTS)}"
        )
    if min(cfg.hidden_dim, cfg.num_layers, cfg.latent_dim, cfg.seq_len) < 1:
        raise ConfigError("hidden_dim, num_layers, latent_dim and seq_len must be at least 1")
    fractions = (cfg.embedding_fraction, cfg.supervised_fraction)
    if min(fractions) < 0 or sum(fractions) > 1:
        raise ConfigError(
            f"embedding_fraction and supervised_fraction must be >= 0 and sum to at most 1, got {fractions}"
        )
    if any(v is not None and v < 0 for v in (cfg.embedding_epochs, cfg.supervised_epochs)):
        raise ConfigError("embedding_epochs and supervised_epochs must be >= 0")


def _no_conditions(conditions) -> None:
    if conditions is not None:
        raise ModelError(
            "timegan is unconditional; drop the conditions (use a conditional model such as cgan)"
        )
