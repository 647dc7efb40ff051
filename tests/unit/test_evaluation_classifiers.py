"""Post-hoc discriminative / predictive scores and TSTR on inputs with known answers (tiny GRUs)."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

from marketsynth.data.io import read_bars_file
from marketsynth.evaluation.classifiers import (
    discriminative_score,
    paper_hidden,
    predictive_score,
    repeat,
    tstr,
)
from marketsynth.evaluation.inputs import FeatureScaler, candle_windows, timegan_windows, window_features
from tests.conftest import shared_file
from tests.unit.evaluation_helpers import random_walk_candles

FAST = {"iterations": 150, "lr": 1e-2, "batch_size": 128}


@functools.cache
def btc_features() -> np.ndarray:
    """Unscaled features of 3,000 hourly BTC windows of 12 bars (stride 3), in time order."""
    bars = read_bars_file(shared_file("BTCUSDT_1h.csv")).iloc[-9100:]
    return window_features(candle_windows(bars, 12, stride=3))


def scaled_pair(synthetic_change, n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    real = window_features(random_walk_candles(n, 12, seed=1))
    synthetic = synthetic_change(window_features(random_walk_candles(n, 12, seed=2)))
    scale = FeatureScaler(real)
    return scale(real), scale(synthetic)


def test_discriminative_score_is_near_zero_for_identical_sets():
    real, _ = scaled_pair(lambda x: x, n=2000)  # 400 test windows per class: noise about 0.02
    assert discriminative_score(real, real, seed=0, **FAST) < 0.08


def test_discriminative_score_is_large_for_clearly_different_sets():
    real, synthetic = scaled_pair(lambda x: x * [1, 3, 3, 3, 1])  # three times the volatility
    assert discriminative_score(real, synthetic, seed=0, **FAST) > 0.3


def test_discriminator_columns_choose_what_it_sees():
    def louder(x):
        return x + [0, 0, 0, 0, 2.0]  # synthetic volume is e^2 times higher, prices alike

    real, synthetic = scaled_pair(louder)
    assert discriminative_score(real, synthetic, seed=0, **FAST) > 0.3
    assert discriminative_score(real, synthetic, columns=[1], seed=0, **FAST) < 0.1  # returns only
    wide = discriminative_score(real, synthetic, hidden=32, seed=0, iterations=60, lr=1e-2)
    assert wide > 0.3


def test_scores_are_deterministic_for_a_seed_and_repeat_reports_mean_and_std():
    real, synthetic = scaled_pair(lambda x: x * 1.2)
    once = discriminative_score(real, synthetic, seed=3, iterations=30)
    assert discriminative_score(real, synthetic, seed=3, iterations=30) == once
    result = repeat(lambda s: discriminative_score(real, synthetic, seed=s, iterations=30), 2, seed=3)
    assert result["runs"][0] == once and len(result["runs"]) == 2
    assert result["mean"] == pytest.approx(np.mean(result["runs"]))
    assert result["std"] == pytest.approx(np.std(result["runs"]))


def test_predictive_score_is_lower_when_trained_on_matching_dynamics():
    rng = np.random.default_rng(0)

    def data(coupled: bool, n: int = 600) -> np.ndarray:
        driver = rng.uniform(0, 1, (n, 12))
        target = np.empty_like(driver)
        target[:, 0] = rng.uniform(0, 1, n)
        target[:, 1:] = 0.8 * driver[:, :-1] + 0.1 if coupled else rng.uniform(0, 1, (n, 11))
        return np.stack([driver, target], axis=-1)  # target = last column, driven by the previous driver

    test = data(True)
    matched = predictive_score(data(True), test, seed=0, iterations=300, lr=1e-2)
    mismatched = predictive_score(data(False), test, seed=0, iterations=300, lr=1e-2)
    assert matched < 0.1 < mismatched


def test_timegan_protocol_shapes_on_the_papers_stock_data():
    values = pd.read_csv(shared_file("stock_data.csv")).to_numpy()
    windows = timegan_windows(values, 24, reverse=True, seed=0)[:400]
    assert windows.shape == (400, 24, 6) and paper_hidden(6) == 3
    score = discriminative_score(windows[:200], windows[200:], iterations=10, seed=0)
    assert 0 <= score <= 0.5
    mae = predictive_score(windows[:200], windows[200:], iterations=10, seed=0)  # volume from the rest
    assert 0 < mae < 1


def test_tstr_ratio_is_about_one_when_synthetic_is_a_real_resample():
    features = btc_features()
    train, test = features[:2000], features[2200:]
    resample = train[np.random.default_rng(0).integers(0, len(train), len(train))]
    result = tstr(resample, train, test, target="volatility", seed=0)
    assert result["trtr"] > result["chance"] + 0.05  # the volatility task is learnable
    assert result["ratio"] == pytest.approx(1.0, abs=0.06)
    direction = tstr(resample, train, test, target="direction", seed=0)
    assert 0.3 < direction["tstr"] < 0.7 and direction["target"] == "direction"


def test_tstr_drops_when_synthetic_windows_lost_their_dynamics():
    features = btc_features()
    train, test = features[:2000], features[2200:]
    order = np.random.default_rng(1).random(train.shape[:2]).argsort(axis=1)  # each window's bars reordered
    shuffled = np.take_along_axis(train, order[..., None], axis=1)
    result = tstr(shuffled, train, test, target="volatility", seed=0)
    assert result["ratio"] < 0.95


def test_purged_split_keeps_overlapping_windows_apart():
    from marketsynth.evaluation.classifiers import _purged_split

    train, test = _purged_split(1000, 0.2, overlap=11)
    assert 0.15 < len(test) / 1000 < 0.25 and not set(train) & set(test)
    distance = np.abs(train[:, None] - test[None, :]).min(axis=1)
    assert distance.min() > 11  # no training window shares a bar with a test window


def test_a_wide_gru_memorises_overlapping_windows_unless_the_split_is_purged():
    """Two halves of one random walk (alternating chunks, stride-1 windows) are the same process: a wide GRU
    tested on windows overlapping its training windows tells them apart by heart; purged, it cannot."""
    steps = np.random.default_rng(0).standard_normal((4000, 3)).astype(np.float32)
    windows = np.stack([steps[i : i + 12] for i in range(len(steps) - 12)])
    chunk = (np.arange(len(windows)) // 200) % 2
    inside = np.arange(len(windows)) // 200 == (np.arange(len(windows)) + 11) // 200
    a, b = windows[inside & (chunk == 0)], windows[inside & (chunk == 1)]
    settings = {"hidden": 32, "iterations": 400, "lr": 1e-2, "batch_size": 256, "seed": 0}
    assert discriminative_score(a, b, **settings) > 0.2
    assert discriminative_score(a, b, overlap=11, **settings) < 0.1
