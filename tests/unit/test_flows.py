"""Flow pieces one at a time and composed: exact inverses, log-determinants against numerical Jacobians,
the multi-scale latent layout, and a likelihood that beats a Gaussian on non-Gaussian data."""

import math

import numpy as np
import pytest
import torch

from marketsynth.errors import ModelError
from marketsynth.models.flows import (
    ActNorm,
    AffineCoupling,
    FlowStep,
    InvertibleLinear,
    MultiScaleGlow,
    Split,
    bits_per_dim,
    level_dims,
    standard_normal_log_prob,
)


def _randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """float64, with every parameter moved off its (often identity) initial value."""
    module = module.double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(0.3 * torch.randn(param.shape, generator=gen, dtype=param.dtype))
    return module


def _inputs(dim: int, n: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 1.5 + 0.2


def _initialised(module, dim):
    module = module.double()
    with torch.no_grad():
        module(_inputs(dim, 64, seed=9))  # ActNorm's data-dependent initialisation happens on the first batch
    return _randomise(module)


PIECES = {
    "actnorm": lambda: _initialised(ActNorm(7), 7),
    "linear-lu": lambda: _randomise(InvertibleLinear(7)),
    "coupling-odd": lambda: _randomise(AffineCoupling(7, hidden=16)),
    "coupling-even": lambda: _randomise(AffineCoupling(8, hidden=16)),
    "step": lambda: _initialised(FlowStep(7, hidden=16), 7),
    "glow-16": lambda: _initialised(MultiScaleGlow(16, levels=3, steps=2, hidden=16), 16),
    "glow-5": lambda: _initialised(MultiScaleGlow(5, levels=3, steps=2, hidden=16), 5),
    "glow-2": lambda: _initialised(MultiScaleGlow(2, levels=3, steps=2, hidden=16), 2),
}
DIMS = {"actnorm": 7, "linear-lu": 7, "coupling-odd": 7, "coupling-even": 8, "step": 7, "glow-16": 16,
        "glow-5": 5, "glow-2": 2}


@pytest.mark.parametrize("name", list(PIECES))
def test_inverse_of_forward_is_identity(name):
    torch.manual_seed(0)
    piece, x = PIECES[name](), _inputs(DIMS[name])
    y, logdet = piece(x)
    assert y.shape == x.shape and logdet.shape == (len(x),)
    assert not torch.allclose(y, x)  # the check would be empty for an identity map
    torch.testing.assert_close(piece.inverse(y), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(PIECES))
def test_logdet_is_log_abs_det_of_the_jacobian(name):
    torch.manual_seed(0)
    piece, x = PIECES[name](), _inputs(DIMS[name], n=3)
    _, logdet = piece(x)
    for row, expected in zip(x, logdet, strict=True):
        jac = torch.autograd.functional.jacobian(lambda v: piece(v[None])[0][0], row)
        sign, logabs = torch.linalg.slogdet(jac)
        assert sign != 0
        assert float(logabs) == pytest.approx(float(expected.detach()), abs=1e-6)


def test_actnorm_initialises_once_from_the_first_batch_and_keeps_it_through_save_and_load():
    x = _inputs(5, 200).float() * 3 + 7
    norm = ActNorm(5)
    y, _ = norm(x)
    torch.testing.assert_close(y.mean(0), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(0, unbiased=False), torch.ones(5), atol=1e-4, rtol=0)
    assert bool(norm.initialized)
    before = norm.state_dict()
    norm(x * 10 - 3)  # a second batch does not re-initialise
    torch.testing.assert_close(norm.state_dict()["loc"], before["loc"])
    loaded = ActNorm(5)
    loaded.load_state_dict(before)
    assert bool(loaded.initialized)
    torch.testing.assert_close(loaded(x * 10 - 3)[0], norm(x * 10 - 3)[0])


def test_lu_linear_is_assembled_from_its_factors():
    layer = _randomise(InvertibleLinear(6))
    w = layer.weight()
    assert torch.allclose(torch.linalg.slogdet(w)[1], layer.log_s.sum())
    perm = layer.perm
    assert torch.equal(perm @ perm.T, torch.eye(6, dtype=perm.dtype))
    assert not any(p.requires_grad for p in layer.buffers())


def test_split_and_level_dims():
    assert level_dims(16, 3) == [16, 8, 4]
    assert level_dims(5, 3) == [5, 3, 2]
    assert level_dims(2, 3) == [2]
    assert level_dims(17, 5) == [17, 9, 5, 3, 2]
    with pytest.raises(ModelError):
        level_dims(1, 3)
    split = Split(7)
    x = _inputs(7)
    kept, out = split(x)
    assert kept.shape == (6, 4) and out.shape == (6, 3)
    assert torch.equal(split.inverse(kept, out), x)


def test_multiscale_latent_layout_is_factored_parts_then_the_last_level():
    torch.manual_seed(0)
    flow = _initialised(MultiScaleGlow(16, levels=3, steps=2, hidden=16), 16)
    x = _inputs(16)
    z, _ = flow(x)
    h = x
    for step in flow.levels[0]:
        h, _ = step(h)
    torch.testing.assert_close(z[:, :8], h[:, 8:])  # the first level's factored-out half goes to the latent
    h = h[:, :8]
    for step in flow.levels[1]:
        h, _ = step(h)
    torch.testing.assert_close(z[:, 8:12], h[:, 4:])
    # inverting with only the last level's part changed moves only what that part feeds
    z2 = z.clone()
    z2[:, 12:] += 1.0
    assert not torch.allclose(flow.inverse(z2), x)
    torch.testing.assert_close(flow.inverse(z), x, atol=1e-5, rtol=0)


def test_temperature_zero_is_deterministic_and_log_prob_is_consistent():
    torch.manual_seed(0)
    flow = _initialised(MultiScaleGlow(6, levels=2, steps=2, hidden=16), 6)
    a = flow.sample(4, temperature=0.0, generator=torch.Generator().manual_seed(1))
    b = flow.sample(4, temperature=0.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and torch.equal(a[0].expand_as(a), a)
    torch.testing.assert_close(a[0], flow.inverse(torch.zeros(1, 6, dtype=torch.float64))[0])
    x = _inputs(6)
    z, logdet = flow(x)
    torch.testing.assert_close(flow.log_prob(x), standard_normal_log_prob(z) + logdet)
    assert float(standard_normal_log_prob(torch.zeros(1, 2))[0]) == pytest.approx(-math.log(2 * math.pi))
    assert bits_per_dim(math.log(2) * 4, 4) == pytest.approx(1.0)


def _bananas(n: int, seed: int) -> torch.Tensor:
    """Two independent 2-D bananas: x2 = x1^2 + noise (a curved ridge no Gaussian can follow)."""
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, 2, generator=gen), torch.randn(n, 2, generator=gen)
    return torch.stack([a[:, 0], a[:, 0] ** 2 + 0.2 * a[:, 1], b[:, 0], b[:, 0] ** 2 + 0.2 * b[:, 1]], dim=1)


def test_trained_flow_beats_a_gaussian_on_held_out_non_gaussian_data():
    torch.manual_seed(0)
    train, held_out = _bananas(4000, seed=1), _bananas(2000, seed=2)
    gauss = torch.distributions.MultivariateNormal(train.mean(0), torch.cov(train.T, correction=0))
    gauss_nll = float(-gauss.log_prob(held_out).mean()) / 4
    flow = MultiScaleGlow(4, levels=2, steps=2, hidden=32)
    optimizer = torch.optim.Adam(flow.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        batch = train[torch.randint(0, len(train), (128,), generator=gen)]
        loss = -flow.log_prob(batch).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        flow_nll = float(-flow.log_prob(held_out).mean()) / 4
    assert np.isfinite(flow_nll)
    assert flow_nll < gauss_nll - 0.2, (flow_nll, gauss_nll)
