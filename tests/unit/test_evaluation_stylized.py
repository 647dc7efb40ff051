"""Stylized facts on processes with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from marketsynth.evaluation.stylized import (
    acf,
    aggregate_returns,
    aggregational_gaussianity,
    excess_kurtosis,
    hill_tail_index,
    leverage,
    wasserstein,
)


def ar1(n: int, length: int, phi: float, rng: np.random.Generator) -> np.ndarray:
    x = np.zeros((n, length))
    x[:, 0] = rng.normal(size=n) / np.sqrt(1 - phi**2)  # stationary start
    for t in range(1, length):
        x[:, t] = phi * x[:, t - 1] + rng.normal(size=n)
    return x


def test_acf_of_ar1_is_phi_to_the_lag():
    x = ar1(2000, 30, 0.6, np.random.default_rng(0))
    np.testing.assert_allclose(acf(x, 3), [0.6, 0.36, 0.216], atol=0.03)
    np.testing.assert_allclose(acf(x[0], [1]), [0.6], atol=0.25)  # 1-D series work too


def test_acf_never_pairs_values_across_windows():
    x = np.tile([1.0, -1.0], (50, 1))  # two-step windows: lag-1 pairs only inside a window
    assert acf(x, [1])[0] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="lags"):
        acf(x, 2)


def test_hill_index_recovers_the_pareto_alpha():
    rng = np.random.default_rng(1)
    for alpha in (2.0, 3.0):
        sample = (rng.pareto(alpha, 50_000) + 1) * rng.choice([-1, 1], 50_000)
        assert hill_tail_index(sample) == pytest.approx(alpha, rel=0.08)
    assert hill_tail_index(np.zeros(100)) is None


def test_leverage_is_negative_when_falls_raise_volatility():
    rng = np.random.default_rng(2)
    n, length = 3000, 20
    r = np.zeros((n, length))
    r[:, 0] = rng.normal(size=n)
    for t in range(1, length):
        r[:, t] = rng.normal(size=n) * np.where(r[:, t - 1] < 0, 2.0, 0.5)
    assert leverage(r, 1)[0] < -0.2
    assert abs(leverage(rng.normal(size=(n, length)), 1)[0]) < 0.03


def test_kurtosis_aggregation_and_wasserstein():
    rng = np.random.default_rng(3)
    normal = rng.normal(size=(4000, 24))
    assert abs(excess_kurtosis(normal)) < 0.1
    assert excess_kurtosis(rng.standard_t(4, 100_000)) > 2
    np.testing.assert_allclose(aggregate_returns(np.arange(8.0)[None], 4), [6.0, 22.0])
    assert wasserstein(normal[:2000], normal[2000:]) < 0.05
    assert wasserstein(normal, 2 * normal) > 0.5
    entries = aggregational_gaussianity(normal[:, :12], normal[:, :12])
    assert [e["bars"] for e in entries] == [1, 4, 24]
    assert entries[2]["distance"] is None and "12" in entries[2]["reason"]
    assert entries[1]["distance"] == pytest.approx(0.0)
