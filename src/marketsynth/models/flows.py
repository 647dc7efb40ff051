"""Invertible pieces of a Glow-style normalizing flow over vectors ``[batch, D]``, and their composition.

Every piece is an ``nn.Module`` defined by its own parameters only, with ``forward(x) -> (y, logdet)`` and
``inverse(y) -> x``, where ``logdet[b] = log |det dy/dx|`` for row b. So each can be checked on its own
(inverse(forward(x)) == x, logdet == log|det| of the numerical Jacobian) and they compose by adding logdets.

``MultiScaleGlow`` (Kingma & Dhariwal, 2018, on vectors): per level K steps of ActNorm -> invertible 1x1
"convolution" (an LU-parametrised linear map) -> affine coupling, then ``Split`` factors out half of the
dimensions, which go straight to the latent (16 -> 8 + 8, 8 -> 4 + 4, 4). The latent is the concatenation of
the factored-out parts and the last level's output, with a standard normal prior on all of it, so
``log p(x) = log N(z; 0, I) + logdet`` exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from marketsynth.errors import ModelError

_LOG_2PI = math.log(2 * math.pi)


class ActNorm(nn.Module):
    """Per-dimension affine ``y = (x + loc) * exp(log_scale)``, initialised from the first batch it sees in
    training mode so that batch's output has zero mean and unit variance (scoring or sampling with the module in
    eval mode never initialises it). ``initialized`` is a buffer: it is saved with the weights, so a loaded
    model never re-initialises on the data it is given."""

    def __init__(self, dim: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        if len(x) < 2:  # one row has no spread; wait for a real batch
            return
        self.loc.copy_(-x.mean(dim=0))
        self.log_scale.copy_(-torch.log(x.std(dim=0, unbiased=False).clamp_min(1e-6)))
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not bool(self.initialized):
            self.initialize(x)
        y = (x + self.loc) * torch.exp(self.log_scale)
        return y, self.log_scale.sum().expand(len(x))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.loc


class InvertibleLinear(nn.Module):
    """Glow's invertible 1x1 convolution on a vector: ``y = x W^T`` with ``W = P L (U + diag(sign * exp(log_s)))``.

    P is a fixed permutation, L unit lower-triangular, U strictly upper-triangular, so ``log|det W| = sum(log_s)``
    costs nothing. Initialised from the LU decomposition of a random rotation (drawn from torch's global RNG).
    """

    def __init__(self, dim: int):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(dim, dim, dtype=torch.float64))
        p, lower, upper = torch.linalg.lu(q)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p.float())
        self.register_buffer("sign_s", torch.sign(s).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(dim, dim), -1))
        self.lower = nn.Parameter(lower.float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(s.abs()).float())

    def weight(self) -> torch.Tensor:
        eye = torch.eye(len(self.log_s), dtype=self.log_s.dtype, device=self.log_s.device)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x @ self.weight().T, self.log_s.sum().expand(len(x))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return torch.linalg.solve(self.weight(), y.T).T


class AffineCoupling(nn.Module):
    """The first ``dim // 2`` dimensions pass unchanged and feed an MLP that gives a scale and shift for the rest:
    ``y_b = x_b * exp(s) + t`` with ``s = clamp * tanh(raw / clamp)``, a soft clamp that keeps every step's
    scale within ``exp(±clamp)`` so training cannot blow up. ``logdet = sum(s)``. The last layer starts at
    zero, so a new coupling is the identity (as in Glow)."""

    def __init__(self, dim: int, hidden: int = 64, clamp: float = 2.0):
        super().__init__()
        if dim < 2:
            raise ModelError(f"an affine coupling needs at least 2 dimensions, got {dim}")
        self.split = dim // 2
        self.clamp = float(clamp)
        out = dim - self.split
        self.net = nn.Sequential(
            nn.Linear(self.split, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * out),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _scale_shift(self, x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw, shift = self.net(x_a).chunk(2, dim=1)
        return self.clamp * torch.tanh(raw / self.clamp), shift

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_a, x_b = x[:, : self.split], x[:, self.split:]
        log_scale, shift = self._scale_shift(x_a)
        return torch.cat([x_a, x_b * torch.exp(log_scale) + shift], dim=1), log_scale.sum(dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y_a, y_b = y[:, : self.split], y[:, self.split:]
        log_scale, shift = self._scale_shift(y_a)
        return torch.cat([y_a, (y_b - shift) * torch.exp(-log_scale)], dim=1)


class FlowStep(nn.Module):
    """One Glow step: ActNorm -> invertible linear map -> affine coupling."""

    def __init__(self, dim: int, hidden: int = 64, clamp: float = 2.0):
        super().__init__()
        self.layers = nn.ModuleList([ActNorm(dim), InvertibleLinear(dim), AffineCoupling(dim, hidden, clamp)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = x.new_zeros(len(x))
        for layer in self.layers:
            x, step = layer(x)
            logdet = logdet + step
        return x, logdet

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y


class Split(nn.Module):
    """Factor out the last ``dim // 2`` dimensions (they go to the latent); keeps ``dim - dim // 2``.

    On vectors Glow's squeeze has nothing to reshape, so squeeze + split is this split alone. Volume-preserving.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.keep = dim - dim // 2

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, : self.keep], x[:, self.keep:]

    def inverse(self, kept: torch.Tensor, factored: torch.Tensor) -> torch.Tensor:
        return torch.cat([kept, factored], dim=1)


def level_dims(dim: int, levels: int) -> list[int]:
    """Dimensions each level works on: halving (ceil) after every level, stopping before a level of 1 dim."""
    if dim < 2:
        raise ModelError(f"a flow needs at least 2 features, got {dim}")
    if levels < 1:
        raise ModelError(f"a flow needs at least 1 level, got {levels}")
    dims = [dim]
    while len(dims) < levels and dims[-1] - dims[-1] // 2 >= 2:
        dims.append(dims[-1] - dims[-1] // 2)
    return dims


class MultiScaleGlow(nn.Module):
    """A bijection R^D -> R^D with exact log-likelihood under a standard normal prior (see the module docstring).

    ``forward(x) -> (z, logdet)`` with ``z = [factored_1, factored_2, ..., last level's output]``;
    ``inverse(z) -> x``. Levels that would work on a single dimension are dropped (D = 3 keeps 2 levels).
    """

    def __init__(self, dim: int, levels: int = 3, steps: int = 4, hidden: int = 64, clamp: float = 2.0):
        super().__init__()
        if steps < 1:
            raise ModelError(f"a flow level needs at least 1 step, got {steps}")
        self.dim = dim
        self.dims = level_dims(dim, levels)
        self.levels = nn.ModuleList(
            nn.ModuleList(FlowStep(d, hidden, clamp) for _ in range(steps)) for d in self.dims
        )
        self.splits = nn.ModuleList(Split(d) for d in self.dims[:-1])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = x.new_zeros(len(x))
        factored = []
        for index, steps in enumerate(self.levels):
            for step in steps:
                x, step_logdet = step(x)
                logdet = logdet + step_logdet
            if index < len(self.splits):
                x, out = self.splits[index](x)
                factored.append(out)
        return torch.cat([*factored, x], dim=1), logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        sizes = [d // 2 for d in self.dims[:-1]] + [self.dims[-1]]
        parts = list(torch.split(z, sizes, dim=1))
        x = parts[-1]
        for index in range(len(self.levels) - 1, -1, -1):
            if index < len(self.splits):
                x = self.splits[index].inverse(x, parts[index])
            for step in reversed(self.levels[index]):
                x = step.inverse(x)
        return x

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(x)`` in nats per row."""
        z, logdet = self(x)
        return standard_normal_log_prob(z) + logdet

    def sample(self, n: int, *, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` rows from ``z ~ N(0, temperature^2 I)``; temperature 0 gives ``inverse(0)`` for every row."""
        ref = next(self.parameters())
        z = torch.randn(n, self.dim, generator=generator, dtype=ref.dtype) * float(temperature)
        return self.inverse(z.to(ref.device))


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, I)`` summed over the last dimension."""
    return -0.5 * (z.pow(2).sum(dim=-1) + z.shape[-1] * _LOG_2PI)


def bits_per_dim(nll_nats: torch.Tensor | float, dim: int) -> torch.Tensor | float:
    """Negative log-likelihood per vector (nats) -> bits per dimension."""
    return nll_nats / (dim * math.log(2))
