"""Autoregressive mixture GRU: it learns dependence over time and inside a bar, atoms, and its data handling."""

import numpy as np
import pandas as pd
import pytest
import torch

from marketsynth.errors import ModelError
from marketsynth.models.autoregressive import AutoregressiveModel
from marketsynth.models.data import TrainingData
from marketsynth.representation import make_representation
from marketsynth.training import train_loop

SMALL = {"hidden_size": 16, "num_layers": 1, "mixtures": 3, "head_size": 16, "train_len": 48, "warmup": 16,
         "batch_size": 32, "seq_len": 12}


def toy_series(n: int = 3000, seed: int = 0) -> np.ndarray:
    """[n, 3]: an AR(1) column (phi 0.8), a column equal to 2x the first plus small noise (dependence inside a
    bar), and a column that is exactly 0.5 in 40% of the bars (an atom)."""
    rng = np.random.default_rng(seed)
    ar = np.zeros(n)
    for t in range(1, n):
        ar[t] = 0.8 * ar[t - 1] + 0.6 * rng.standard_normal()
    twice = 2 * ar + 0.1 * rng.standard_normal(n)
    spiky = np.where(rng.random(n) < 0.4, 0.5, rng.standard_normal(n))
    return np.column_stack([ar, twice, spiky]).astype(np.float32)


@pytest.fixture(scope="module")
def fitted():
    torch.set_num_threads(1)
    series = toy_series()
    model = AutoregressiveModel({**SMALL, "n_features": 3}, seed=0)
    arrays = model.sequences([series])
    history = train_loop(model, arrays.train, arrays.conditions, epochs=6)
    return model, series, history


def lag1(x: np.ndarray) -> float:
    x = x - x.mean()
    return float((x[:, 1:] * x[:, :-1]).sum() / (x * x).sum())


def test_learns_autocorrelation_and_dependence_inside_a_bar(fitted):
    model, series, history = fitted
    assert history.rows[-1]["nll"] < history.rows[0]["nll"]
    samples = model.sample(400, seed=1, length=48)
    assert abs(lag1(samples[..., 0]) - 0.8) < 0.1  # the AR(1) coefficient
    assert np.corrcoef(samples[..., 0].ravel(), samples[..., 1].ravel())[0, 1] > 0.95
    assert abs(samples[..., 0].std() - series[:, 0].std()) < 0.2 * series[:, 0].std()


def test_atoms_are_found_and_reproduced_exactly(fitted):
    model, _, _ = fitted
    assert model.network.has_atom.tolist() == [False, False, True]
    assert model.network.atom[2].item() == 0.5
    share = float(np.mean(model.sample(400, seed=2)[..., 2] == np.float32(0.5)))
    assert 0.33 < share < 0.47  # 40% in the data


def test_samples_stay_within_the_widened_training_range(fitted):
    model, series, _ = fitted
    samples = model.sample(200, seed=3, length=100, temperature=5.0)  # hot: the bounds bind
    spread = series.max(axis=0) - series.min(axis=0)
    assert (samples >= series.min(axis=0) - 0.25 * spread - 1e-5).all()
    assert (samples <= series.max(axis=0) + 0.25 * spread + 1e-5).all()


def test_temperature_widens_the_draws(fitted):
    model, _, _ = fitted
    cold, hot = model.sample(300, seed=4, temperature=0.5), model.sample(300, seed=4, temperature=1.5)
    assert hot[..., 0].std() > cold[..., 0].std()


def test_training_sequences_follow_the_gap_free_segments():
    series = toy_series(200)
    segments = [series[:120], series[130:]]
    model = AutoregressiveModel({**SMALL, "n_features": 3, "train_len": 100})
    arrays = model.sequences(segments)
    assert model.window_length == 60  # little data: half the longest segment
    assert arrays.train.shape == (120 - 60 + 1 + 70 - 60 + 1, 60, 3)  # no sequence crosses the gap
    assert arrays.conditions is None and arrays.describe() == "72 sequences of 60 bars"
    np.testing.assert_array_equal(arrays.train[61], series[130:190])  # the second segment's first sequence
    model = AutoregressiveModel({**SMALL, "n_features": 3, "train_len": 30, "season": 24})
    phases = [np.arange(120) % 24, (130 + np.arange(70)) % 24]  # each bar's position in the day
    arrays = model.sequences(segments, phases)
    assert arrays.train.shape == (120 - 30 + 1 + 70 - 30 + 1, 30, 3)
    np.testing.assert_array_equal(arrays.conditions, np.concatenate([np.arange(91), 130 + np.arange(41)]) % 24)


def test_training_arrays_come_straight_from_the_bars_segments():
    """A 10-bar hole in hourly bars: no sequence spans it, the bar after it (its return spans the hole) is left
    out, each sequence starts at its first bar's hour, and the daily cycle comes from the bar times."""
    rng = np.random.default_rng(1)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 200)))
    open_ = np.concatenate([[100.0], close[:-1]])
    bars = pd.DataFrame({"time": pd.date_range("2024-01-01 05:00", periods=200, freq="h", tz="UTC"), "open": open_,
                         "high": np.maximum(open_, close) * 1.001, "low": np.minimum(open_, close) * 0.999,
                         "close": close, "volume": rng.uniform(1, 2, 200)}).drop(index=range(120, 130))
    bars = bars.reset_index(drop=True)
    rep = make_representation("log-returns").fit(bars)
    data = TrainingData(bars, representation=rep)
    assert [(s.start, s.stop) for s in data.segments] == [(0, 120), (120, 190)]
    config = AutoregressiveModel.configure({**SMALL, "train_len": 30}, data)
    assert config["season"] == 24 and config["n_features"] == 5 and config["head_clock"] == 3
    model = AutoregressiveModel(config)
    arrays = model.training_arrays(data)
    encoded = rep.encode(bars)
    assert arrays.train.shape == (119 - 30 + 1 + 69 - 30 + 1, 30, 5)
    np.testing.assert_allclose(arrays.train[0], encoded[1:31], rtol=1e-6)  # bar 0 only anchors bar 1
    np.testing.assert_allclose(arrays.train[90], encoded[121:151], rtol=1e-6)  # bar 120 follows the hole
    assert arrays.conditions[0] == 6 and arrays.conditions[90] == (5 + 131) % 24  # hours of the first bars
    held_out = model.training_arrays(TrainingData(bars, representation=rep, val_fraction=0.2))
    assert held_out.val.shape[1:] == (12, 5) and len(held_out.train) < len(arrays.train)


def test_learns_the_daily_cycle_from_the_bar_times():
    """A feature whose mean follows the hour of the day: sampled at a given hour, it has that hour's mean."""
    rng = np.random.default_rng(5)
    hours = np.arange(3000) % 24
    level = np.where((hours >= 12) & (hours < 18), 2.0, -0.5)
    series = np.column_stack([level + 0.3 * rng.standard_normal(3000), rng.standard_normal(3000)]).astype(np.float32)
    model = AutoregressiveModel({**SMALL, "n_features": 2, "season": 24}, seed=0)
    arrays = model.sequences([series], [hours])
    train_loop(model, arrays.train, arrays.conditions, epochs=5)
    at = np.arange(24)
    samples = model.sample(24 * 40, np.repeat(at, 40), seed=1, length=24)  # path k starts at hour k // 40
    hour_of = (np.repeat(at, 40)[:, None] + np.arange(24)) % 24
    busy = (hour_of >= 12) & (hour_of < 18)
    assert samples[..., 0][busy].mean() > 1.5 and samples[..., 0][~busy].mean() < 0
    free = model.sample(500, seed=2, length=24)[..., 0]  # start hours drawn uniformly: the busy share is 1/4
    assert 0.15 < (free > 0.75).mean() < 0.35


def test_the_heads_read_the_clock_only_in_new_intraday_models():
    """Configured on hourly bars the feature heads read 3 harmonics of the time of day; a config without
    ``head_clock`` (a checkpoint made before it) builds the heads it was saved with, and daily bars get none."""
    new = AutoregressiveModel({**SMALL, "n_features": 2, "season": 24, "head_clock": 3})
    old = AutoregressiveModel({**SMALL, "n_features": 2, "season": 24})
    daily = AutoregressiveModel({**SMALL, "n_features": 2, "season": 0, "head_clock": 3})
    first_layer = [m.network.heads[0].net[0].in_features for m in (new, old, daily)]
    assert first_layer == [SMALL["hidden_size"] + 6, SMALL["hidden_size"], SMALL["hidden_size"]]
    assert new.sample(4, np.array([0, 6, 12, 18]), seed=0).shape == (4, new.config.seq_len, 2)
    with pytest.raises(ModelError, match="head_clock"):
        AutoregressiveModel({"head_clock": -1})


def test_bad_settings_and_input_are_model_errors():
    with pytest.raises(ModelError, match="positive integers"):
        AutoregressiveModel({"mixtures": 0})
    with pytest.raises(ModelError, match="warmup"):
        AutoregressiveModel({"warmup": -1})
    model = AutoregressiveModel({**SMALL, "n_features": 3})
    with pytest.raises(ModelError, match=r"\[T, 3\]"):
        model.sequences([np.zeros((40, 2))])
    with pytest.raises(ModelError, match="no daily cycle"):
        model.sample(2, conditions=np.zeros(2))
    with pytest.raises(ModelError, match="season"):
        AutoregressiveModel({"season": -1})
    with pytest.raises(ModelError, match="temperature"):
        model.sample(2, temperature=0)
