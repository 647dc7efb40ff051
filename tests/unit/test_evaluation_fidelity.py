"""Distribution statistics, KL divergence, coverage and candle validity."""

from __future__ import annotations

import numpy as np
import pytest

from marketsynth.evaluation.fidelity import (
    candle_validity,
    candle_validity_rate,
    coverage,
    expected_coverage,
    histogram_kl,
    return_statistics,
)


def test_return_statistics_of_known_data():
    x = np.tile([0.01, -0.01], (10, 2))
    stats = return_statistics(x)
    assert stats["mean"] == pytest.approx(0.0)
    assert stats["std"] == pytest.approx(0.01)
    assert stats["lag1_autocorrelation"] == pytest.approx(-1.0)
    assert stats["excess_kurtosis"] == pytest.approx(-2.0)


def test_kl_is_zero_for_identical_and_large_for_different_samples():
    rng = np.random.default_rng(0)
    real = rng.normal(size=20_000)
    assert histogram_kl(real, real) == pytest.approx(0.0, abs=1e-12)
    assert histogram_kl(real, rng.normal(size=20_000)) < 0.01
    assert histogram_kl(real, 3 * rng.normal(size=20_000)) > 0.5
    assert np.isfinite(histogram_kl(real, np.full(100, 50.0)))  # empty bins are smoothed, not infinite


def test_coverage_matches_theory_for_one_distribution_and_drops_for_a_collapsed_generator():
    rng = np.random.default_rng(1)
    real, synthetic = rng.normal(size=(600, 4, 2)), rng.normal(size=(600, 4, 2))
    assert expected_coverage(600, 600) == pytest.approx(1 - 0.5**5, abs=0.01)
    assert coverage(real, synthetic) == pytest.approx(expected_coverage(600, 600), abs=0.04)
    collapsed = np.repeat(synthetic[:3], 200, axis=0)
    assert coverage(real, collapsed) < 0.2


def test_candle_validity_on_hand_made_candles():
    candles = np.array([
        [10, 12, 9, 11, 5],  # valid
        [10, 10, 10, 10, 0],  # doji with no volume: valid
        [10, 10.5, 9, 11, 5],  # high below close
        [10, 12, 10.5, 11, 5],  # low above open
        [10, 12, 0, 11, 5],  # zero low
        [10, 12, 9, 11, -1],  # negative volume
        [10, np.nan, 9, 11, 5],  # missing high
    ], dtype=float)
    np.testing.assert_array_equal(candle_validity(candles), [True, True, False, False, False, False, False])
    assert candle_validity_rate(candles[None]) == pytest.approx(2 / 7)
