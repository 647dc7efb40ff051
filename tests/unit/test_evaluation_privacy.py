"""Memorization flags copies of the training windows, not independent samples of the same distribution."""

from __future__ import annotations

import numpy as np
import pytest

from marketsynth.evaluation.privacy import copy_limit, memorization, nearest_distances


def sets(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(1500, 8, 5)), rng.normal(size=(500, 8, 5)), rng


@pytest.mark.parametrize("relative", [True, False])
def test_exact_copies_are_flagged(relative):
    train, heldout, _ = sets()
    result = memorization(train[:400], train, heldout, relative=relative)
    assert result.flagged and result.share_closer == 1.0
    assert result.exact_copies == 400


@pytest.mark.parametrize("relative", [True, False])
def test_an_independent_sample_is_not_flagged(relative):
    train, heldout, rng = sets(1)
    result = memorization(rng.normal(size=(1000, 8, 5)), train, heldout, relative=relative)
    assert not result.flagged and result.exact_copies == 0
    assert 0.0 <= result.share_closer < 0.12


def test_noisy_copies_are_flagged():
    train, heldout, rng = sets(2)
    noisy = train[:400] + rng.normal(0, 0.1, train[:400].shape)
    assert memorization(noisy, train, heldout).flagged


def test_helpers():
    assert copy_limit(0.05, 10_000) == pytest.approx(0.1 + 3 * np.sqrt(0.05 * 0.95 / 10_000))
    np.testing.assert_allclose(nearest_distances(np.zeros((1, 2)), np.array([[3.0, 4.0]])), [5.0])
