"""VaR/CVaR and distribution statistics against closed forms and their defining properties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from marketsynth.errors import ConfigError, DataError
from marketsynth.risk import (
    bootstrap_stderr,
    distribution,
    historical_cvar,
    historical_var,
    loss_probability,
    monte_carlo_var,
    parametric_cvar,
    parametric_var,
    real_horizon_returns,
    tail_risk,
    worst_loss,
)

N = 400_000
MU, SIGMA = 0.001, 0.02


def normal_var(level, mu=MU, sigma=SIGMA):
    return -mu + sigma * stats.norm.ppf(level)


def normal_cvar(level, mu=MU, sigma=SIGMA):
    return -mu + sigma * stats.norm.pdf(stats.norm.ppf(level)) / (1 - level)


def t_var(level, df, mu, scale):
    return -mu + scale * stats.t.ppf(level, df)


def t_cvar(level, df, mu, scale):
    """Expected shortfall of a location-scale Student-t (McNeil, Frey & Embrechts, eq. 2.25)."""
    q = stats.t.ppf(level, df)
    return -mu + scale * stats.t.pdf(q, df) / (1 - level) * (df + q**2) / (df - 1)


@pytest.fixture(scope="module")
def normal_sample():
    return np.random.default_rng(1).normal(MU, SIGMA, N)


@pytest.mark.parametrize("level", [0.95, 0.99])
def test_historical_var_and_cvar_of_a_normal_match_the_closed_forms(normal_sample, level):
    # sampling error of a quantile at n = 400k is about 0.5% of sigma at 99%; allow 2%
    assert historical_var(normal_sample, level) == pytest.approx(normal_var(level), rel=0.02)
    assert historical_cvar(normal_sample, level) == pytest.approx(normal_cvar(level), rel=0.02)
    assert parametric_var(normal_sample, level) == pytest.approx(normal_var(level), rel=0.01)
    assert parametric_cvar(normal_sample, level) == pytest.approx(normal_cvar(level), rel=0.01)


@pytest.mark.parametrize("level", [0.95, 0.99])
@pytest.mark.parametrize("df", [3, 5])
def test_historical_var_and_cvar_of_a_student_t_match_the_closed_forms(level, df):
    mu, scale = -0.0005, 0.01
    sample = mu + scale * np.random.default_rng(df).standard_t(df, N)
    assert historical_var(sample, level) == pytest.approx(t_var(level, df, mu, scale), rel=0.03)
    assert historical_cvar(sample, level) == pytest.approx(t_cvar(level, df, mu, scale), rel=0.05)
    # the normal approximation understates a fat 99% tail: exactly what the side-by-side table shows
    if level == 0.99:
        assert parametric_cvar(sample, level) < historical_cvar(sample, level)


def test_small_samples_follow_the_stated_definitions():
    returns = np.array([-0.05, -0.01, 0.0, 0.02, 0.04, -0.03, 0.01, -0.02, 0.03, 0.05])
    # 10 outcomes, level 0.9: the tail is 1 outcome; VaR is the 2nd largest loss (exceeded by 1 of 10)
    assert historical_var(returns, 0.9) == pytest.approx(0.03)
    assert historical_cvar(returns, 0.9) == pytest.approx(0.05)
    # level 0.85: tail of 1.5 outcomes = the worst plus half of the second
    assert historical_cvar(returns, 0.85) == pytest.approx((0.05 + 0.5 * 0.03) / 1.5)
    assert historical_cvar([-1.0, -2.0, -3.0], 0.5) == pytest.approx((3 + 0.5 * 2) / 1.5)
    assert worst_loss(returns) == pytest.approx(0.05)
    assert loss_probability(returns, 0.02) == pytest.approx(0.2)  # strictly beyond: 0.03 and 0.05
    assert historical_var([0.01, 0.02, 0.03], 0.95) == pytest.approx(-0.01)  # all gains: a negative "loss"


finite = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=1, max_size=300), st.floats(0.5, 0.999), st.floats(0.5, 0.999))
def test_cvar_is_at_least_var_and_both_grow_with_the_level(values, a, b):
    low, high = sorted((a, b))
    var_low, var_high = historical_var(values, low), historical_var(values, high)
    cvar_low, cvar_high = historical_cvar(values, low), historical_cvar(values, high)
    assert cvar_low >= var_low and cvar_high >= var_high
    assert var_high >= var_low and cvar_high >= cvar_low - 1e-12
    assert worst_loss(values) >= cvar_high - 1e-12


@settings(max_examples=100, deadline=None)
@given(st.lists(finite, min_size=2, max_size=100).filter(lambda v: np.std(v) > 1e-9), st.floats(0.5, 0.99),
       st.floats(0.5, 0.99))
def test_parametric_figures_are_ordered_too(values, a, b):
    low, high = sorted((a, b))
    assert parametric_cvar(values, low) >= parametric_var(values, low)
    assert parametric_var(values, high) >= parametric_var(values, low) - 1e-12
    assert parametric_cvar(values, high) >= parametric_cvar(values, low) - 1e-12


def test_distribution_statistics(normal_sample):
    dist = distribution(normal_sample)
    assert dist.n == N and dist.mean == pytest.approx(MU, abs=1e-4) and dist.std == pytest.approx(SIGMA, rel=0.01)
    assert abs(dist.skewness) < 0.02 and abs(dist.excess_kurtosis) < 0.05
    assert list(dist.percentiles) == [1, 5, 25, 50, 75, 95, 99]
    assert dist.percentiles[5] == pytest.approx(stats.norm.ppf(0.05, MU, SIGMA), rel=0.02)
    t = distribution(np.random.default_rng(0).standard_t(5, N))
    assert t.excess_kurtosis == pytest.approx(6.0, rel=0.35)  # 6 / (df - 4); its estimate converges slowly
    flat = distribution(np.full(10, 0.01))
    assert flat.skewness == 0 and flat.excess_kurtosis == 0 and flat.std == pytest.approx(0, abs=1e-15)
    assert set(dist.to_dict()["percentiles"]) == {"p1", "p5", "p25", "p50", "p75", "p95", "p99"}


def test_tail_risk_and_monte_carlo_helpers(normal_sample):
    rows = tail_risk(normal_sample)
    assert [r.level for r in rows] == [0.95, 0.99]
    assert rows[1].var > rows[0].var and rows[1].cvar > rows[1].var
    var, cvar = monte_carlo_var(lambda n, rng: rng.normal(MU, SIGMA, n), 200_000, 0.99, seed=3)
    assert var == pytest.approx(normal_var(0.99), rel=0.03) and cvar == pytest.approx(normal_cvar(0.99), rel=0.03)
    se_var, se_cvar = bootstrap_stderr(normal_sample, 0.99, n_boot=30)
    # asymptotic s.e. of a quantile: sqrt(p (1 - p) / n) / f(q)
    expected = np.sqrt(0.99 * 0.01 / N) * SIGMA / stats.norm.pdf(stats.norm.ppf(0.99))
    assert 0.4 * expected < se_var < 2.5 * expected and se_cvar > 0


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(ConfigError, match="confidence level"):
        historical_var([0.1, 0.2], 1.0)
    with pytest.raises(ConfigError, match="confidence level"):
        parametric_cvar([0.1, 0.2], 0)
    with pytest.raises(DataError, match="NaN or infinite"):
        historical_cvar([0.1, np.nan], 0.95)
    with pytest.raises(DataError, match="at least"):
        historical_var([], 0.95)
    with pytest.raises(DataError, match="at least 4"):
        distribution([0.1, 0.2])


def test_real_horizon_returns_skip_windows_across_a_time_gap():
    times = pd.date_range("2023-01-01", periods=10, freq="h", tz="UTC")
    times = times.delete([5])  # a one-hour gap between 04:00 and 06:00
    close = np.arange(1.0, 10.0)
    bars = pd.DataFrame({"time": times, "close": close})
    out = real_horizon_returns(bars, 2)
    # windows (start index): 0..2 and 5..6 lie in one gap-free run; 3 and 4 span the gap
    assert np.allclose(out, [close[i + 2] / close[i] - 1 for i in (0, 1, 2, 5, 6)])
    assert len(real_horizon_returns(bars, 20)) == 0
