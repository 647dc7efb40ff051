"""Risk measures over a sample of returns: VaR, CVaR (expected shortfall) and distribution statistics.

Sign and level conventions (every function here follows them):

* inputs are *returns* (or P&L as a fraction of capital): positive is a gain, negative a loss;
* VaR and CVaR are reported as **positive loss fractions**: ``VaR 95% = 0.043`` means a loss of 4.3% or more
  happens in at most 5% of outcomes. A negative VaR means even that tail is a gain;
* ``level`` is the confidence level (0.95, 0.99), not the tail probability.

Historical VaR is the empirical loss quantile by the inverted CDF (no interpolation): the smallest loss ``x``
with ``P(loss <= x) >= level``. Historical CVaR is the Acerbi–Tasche estimator — the mean of the worst
``n (1 - level)`` outcomes, the boundary outcome counted fractionally — so ``CVaR >= VaR`` holds exactly for any
sample and both never decrease as the level rises. The parametric (normal) figures use the sample mean and
standard deviation: ``VaR = -mu + sigma z`` and ``CVaR = -mu + sigma phi(z) / (1 - level)`` with
``z = Phi^-1(level)``. Monte Carlo VaR is historical VaR on simulated outcomes; ``bootstrap_stderr`` says how
much of a difference between two such estimates is sampling noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from marketsynth.errors import ConfigError, DataError

LEVELS = (0.95, 0.99)
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


def _returns(values, *, minimum: int = 2) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if len(array) < minimum:
        raise DataError(f"risk measures need at least {minimum} outcomes, got {len(array)}")
    if not np.isfinite(array).all():
        raise DataError(f"{int((~np.isfinite(array)).sum())} outcome(s) are NaN or infinite")
    return array


def _level(level: float) -> float:
    level = float(level)
    if not 0 < level < 1:
        raise ConfigError(f"a confidence level is between 0 and 1 (e.g. 0.95), got {level}")
    return level


def historical_var(returns, level: float = 0.95) -> float:
    """Empirical VaR as a positive loss fraction: the ``floor(n (1 - level)) + 1``-th largest loss (the
    inverted-CDF quantile of the losses, no interpolation)."""
    return _historical(returns, level)[0]


def historical_cvar(returns, level: float = 0.95) -> float:
    """Expected shortfall: the mean loss over the worst ``n (1 - level)`` outcomes (Acerbi–Tasche)."""
    return _historical(returns, level)[1]


def _historical(returns, level: float) -> tuple[float, float]:
    """(VaR, CVaR) from one partial sort, so the two always agree on where the tail starts."""
    losses = -_returns(returns, minimum=1)
    n = len(losses)
    tail = n * (1.0 - _level(level))
    if abs(tail - round(tail)) < 1e-9:  # 10 * (1 - 0.9) is 0.9999999999999998 in floating point
        tail = float(round(tail))
    whole = min(int(math.floor(tail)), n - 1)
    # the whole+1 largest losses, largest first; partition keeps this O(n) for 100k scenarios
    worst = -np.sort(-np.partition(losses, n - whole - 1)[n - whole - 1:])
    var = float(worst[whole])
    cvar = (worst[:whole].sum() + (tail - whole) * var) / tail
    return var, float(max(cvar, var))  # max: float rounding only; mathematically cvar >= var


def parametric_var(returns, level: float = 0.95) -> float:
    """Normal VaR from the sample mean and standard deviation (ddof=1)."""
    mu, sigma = _moments(returns)
    return float(-mu + sigma * stats.norm.ppf(_level(level)))


def parametric_cvar(returns, level: float = 0.95) -> float:
    """Normal expected shortfall from the sample mean and standard deviation (ddof=1)."""
    mu, sigma = _moments(returns)
    level = _level(level)
    return float(-mu + sigma * stats.norm.pdf(stats.norm.ppf(level)) / (1.0 - level))


def _moments(returns) -> tuple[float, float]:
    array = _returns(returns)
    return float(array.mean()), float(array.std(ddof=1))


def worst_loss(returns) -> float:
    """The largest loss in the sample (a positive fraction; negative if every outcome is a gain)."""
    return float(-_returns(returns, minimum=1).min())


def loss_probability(returns, threshold: float) -> float:
    """Fraction of outcomes losing strictly more than ``threshold`` (a positive loss fraction, e.g. 0.1)."""
    return float((-_returns(returns, minimum=1) > float(threshold)).mean())


@dataclass(frozen=True)
class TailRisk:
    """VaR and CVaR at one confidence level, historical and parametric-normal, as positive loss fractions."""

    level: float
    var: float
    cvar: float
    var_normal: float
    cvar_normal: float


def tail_risk(returns, levels: Sequence[float] = LEVELS) -> list[TailRisk]:
    array = _returns(returns)
    return [TailRisk(level, historical_var(array, level), historical_cvar(array, level),
                     parametric_var(array, level), parametric_cvar(array, level)) for level in levels]


@dataclass(frozen=True)
class Distribution:
    """Moments and percentiles of a return sample (``percentiles``: {1: p1, 5: p5, ...})."""

    n: int
    mean: float
    std: float
    skewness: float
    excess_kurtosis: float
    percentiles: dict[int, float]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["percentiles"] = {f"p{k}": v for k, v in self.percentiles.items()}
        return out


def distribution(returns, percentiles: Sequence[float] = PERCENTILES) -> Distribution:
    """Mean, std (ddof=1), skewness and excess kurtosis (bias-corrected), and the given percentiles."""
    array = _returns(returns, minimum=4)
    flat = float(np.ptp(array)) == 0.0  # scipy warns and returns NaN on a constant sample; say 0 instead
    skew = 0.0 if flat else float(stats.skew(array, bias=False))
    kurt = 0.0 if flat else float(stats.kurtosis(array, fisher=True, bias=False))
    values = np.percentile(array, list(percentiles))
    return Distribution(len(array), float(array.mean()), float(array.std(ddof=1)), skew, kurt,
                        {int(p) if float(p).is_integer() else p: float(v) for p, v in zip(percentiles, values,
                                                                                          strict=True)})


def monte_carlo_var(draw: Callable[[int, np.random.Generator], np.ndarray], n: int, level: float = 0.95, *,
                    seed: int = 0) -> tuple[float, float]:
    """Monte Carlo (VaR, CVaR): draw ``n`` outcomes with ``draw(n, rng)`` and take their historical figures."""
    if n < 2:
        raise ConfigError(f"Monte Carlo VaR needs at least 2 draws, got {n}")
    outcomes = _returns(draw(int(n), np.random.default_rng(seed)))
    return historical_var(outcomes, level), historical_cvar(outcomes, level)


def bootstrap_stderr(returns, level: float = 0.95, *, n_boot: int = 100, seed: int = 0,
                     max_n: int = 20_000) -> tuple[float, float]:
    """Bootstrap standard errors of historical (VaR, CVaR). Samples larger than ``max_n`` are bootstrapped
    from a random subsample of that size and the result is scaled by ``sqrt(max_n / n)`` (the usual
    1/sqrt(n) rate of quantile estimators), which keeps this cheap for 100k scenarios."""
    array = _returns(returns)
    rng = np.random.default_rng(seed)
    scale = 1.0
    if len(array) > max_n:
        scale = math.sqrt(max_n / len(array))
        array = rng.choice(array, max_n, replace=False)
    draws = rng.integers(0, len(array), size=(n_boot, len(array)))
    var, cvar = np.array([_historical(array[row], level) for row in draws]).T
    return float(np.std(var, ddof=1) * scale), float(np.std(cvar, ddof=1) * scale)
