"""GARCH baseline: parameter recovery, its training series from the bars' segments, reproducible sampling,
wicks, save/load."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from marketsynth.checkpoint import load_checkpoint, save_checkpoint
from marketsynth.data.bars import as_bars
from marketsynth.errors import ConfigError, ModelError
from marketsynth.models.base import History
from marketsynth.models.data import TrainingArrays, TrainingData
from marketsynth.models.garch import GarchModel
from marketsynth.representation import make_representation

TRUE = {"mu": 0.02, "omega": 0.05, "alpha": 0.10, "beta": 0.85, "nu": 6.0}


def simulate_garch(n_steps: int, seed: int = 7, **params) -> tuple[np.ndarray, np.ndarray]:
    """Returns and conditional vols of a GARCH(1,1) with standardized Student-t shocks."""
    p = {**TRUE, **params}
    rng = np.random.default_rng(seed)
    z = rng.standard_t(p["nu"], size=n_steps + 500) * np.sqrt((p["nu"] - 2) / p["nu"])
    persistence = p["alpha"] + p["beta"]
    var = p["omega"] / (1 - persistence) if persistence < 1 else 100 * p["omega"]
    returns, vols = np.empty(n_steps + 500), np.empty(n_steps + 500)
    for t, shock in enumerate(z):
        vols[t] = np.sqrt(var)
        returns[t] = p["mu"] + vols[t] * shock
        var = p["omega"] + p["alpha"] * (returns[t] - p["mu"]) ** 2 + p["beta"] * var
    return returns[500:], vols[500:]


def bars_like(returns: np.ndarray, vols: np.ndarray, seed: int = 1) -> np.ndarray:
    """Features [T, 5] whose wicks and volume grow with |return| and volatility, as in real markets."""
    rng = np.random.default_rng(seed)
    size = np.abs(returns) + vols
    gap = rng.normal(0, 0.01, len(returns))
    upper = size * rng.uniform(0.2, 0.8, len(returns))
    lower = size * rng.uniform(0.2, 0.8, len(returns))
    volume = 5 + np.log(size) + rng.normal(0, 0.1, len(returns))
    return np.column_stack([gap, returns, upper, lower, volume])


def fit(model: GarchModel, series: np.ndarray):
    return model.fit_once(TrainingArrays(series, kind="bars"))


@pytest.fixture(scope="module")
def fitted() -> tuple[GarchModel, np.ndarray, dict]:
    returns, vols = simulate_garch(8000)
    features = bars_like(returns, vols)
    model = GarchModel()
    history = fit(model, features)
    return model, features, history.rows[0]


def test_fit_recovers_known_parameters(fitted):
    model, _, row = fitted
    p = model.params
    assert abs(p["alpha"] - TRUE["alpha"]) < 0.04
    assert abs(p["beta"] - TRUE["beta"]) < 0.06
    assert abs(p["nu"] - TRUE["nu"]) < 2.0
    assert abs(p["omega"] - TRUE["omega"]) < 0.04  # reported in the input's units (the x10/std rescale is undone)
    assert abs(p["mu"] - TRUE["mu"]) < 0.03
    assert row["n_obs"] == 8000
    assert (
        np.isfinite(row["loglik"])
        and np.isfinite(row["aic"])
        and row["aic"] == pytest.approx(-2 * row["loglik"] + 2 * 5)
    )


def test_fit_is_invariant_to_affine_scaling_of_returns(fitted):
    """Fitting in the representation's scaled space is exact: z-scoring returns only rescales mu and omega."""
    model, features, _ = fitted
    center, scale = features[:, 1].mean(), features[:, 1].std()
    scaled = features.copy()
    scaled[:, 1] = (features[:, 1] - center) / scale
    other = GarchModel()
    fit(other, scaled)
    for key in ("alpha", "beta", "nu"):
        assert other.params[key] == pytest.approx(model.params[key], rel=2e-2)
    assert other.params["omega"] * scale**2 == pytest.approx(model.params["omega"], rel=5e-2)


def test_training_series_is_every_bar_of_the_segments_once(btc_csv):
    """Two gap-free runs of hourly bars: the series is their encoded bars without each run's first bar (its
    return spans the gap), in order, no bar twice; held-out bars stay out of the fit; other encodings are
    refused."""
    bars = as_bars(pd.read_csv(btc_csv, nrows=400)).drop(index=range(200, 210)).reset_index(drop=True)
    rep = make_representation("log-returns").fit(bars)
    arrays = GarchModel().training_arrays(TrainingData(bars, representation=rep))
    encoded = rep.encode(bars)
    np.testing.assert_array_equal(arrays.train, np.concatenate([encoded[1:200], encoded[201:]]))
    assert arrays.describe() == "388 bars"
    held_out = GarchModel().training_arrays(TrainingData(bars, representation=rep, val_fraction=0.25))
    assert len(held_out.train) < 0.8 * len(arrays.train)
    np.testing.assert_array_equal(held_out.train, arrays.train[: len(held_out.train)])
    with pytest.raises(ConfigError, match="garch needs the log-returns representation"):
        GarchModel.representation_for("minmax-ohlcv")


def test_sampling_is_reproducible_and_shaped(fitted):
    model = fitted[0]
    first = model.sample(16, seed=3)
    assert first.shape == (16, 24, 5) and first.dtype == np.float32 and np.isfinite(first).all()
    assert np.array_equal(first, model.sample(16, seed=3))
    assert not np.array_equal(first, model.sample(16, seed=4))
    long = model.sample(2, seed=3, length=1000)
    assert long.shape == (2, 1000, 5)
    hot = model.sample(400, seed=5, temperature=2.0)[:, :, 1]
    cold = model.sample(400, seed=5, temperature=1.0)[:, :, 1]
    assert np.std(hot) == pytest.approx(2 * np.std(cold), rel=1e-3)


def test_simulated_returns_have_the_fitted_volatility_clustering(fitted):
    model, features, _ = fitted
    paths = model.sample(200, seed=11, length=500)[:, :, 1].astype(np.float64)
    assert np.std(paths) == pytest.approx(np.std(features[:, 1]), rel=0.15)
    centered = np.abs(paths - paths.mean())
    lag1 = np.mean([np.corrcoef(p[:-1], p[1:])[0, 1] for p in centered])
    assert lag1 > 0.05  # |returns| are autocorrelated: volatility clusters


def test_empirical_conditional_features_follow_the_return(fitted):
    model = fitted[0]
    sample = model.sample(200, seed=2).reshape(-1, 5).astype(np.float64)
    abs_ret = np.abs(sample[:, 1] - sample[:, 1].mean())
    for column in (2, 3, 4):  # upper wick, lower wick, volume widen with the move
        assert spearmanr(abs_ret, sample[:, column]).statistic > 0.3


def test_checkpoint_round_trip_gives_the_same_samples(fitted, tmp_path):
    model = fitted[0]
    save_checkpoint(tmp_path / "garch", model, history=History([model.fit_stats]), epoch=1)
    loaded = load_checkpoint(tmp_path / "garch").model
    assert loaded.params == model.params
    assert np.array_equal(loaded.sample(8, seed=9, length=50), model.sample(8, seed=9, length=50))
    state = json.loads(json.dumps(model.extra_state()))  # JSON-able
    assert state["params"] == model.params


def test_near_integrated_fit_samples_stay_in_the_data_range():
    """Crypto fits often give alpha + beta ~ 1, where the unconditional variance explodes; paths start from
    the fitted variances of real bars instead, so samples keep the data's scale."""
    returns, vols = simulate_garch(5000, seed=3, omega=0.002, alpha=0.06, beta=0.94, nu=3.5)
    features = bars_like(returns, vols)
    model = GarchModel()
    fit(model, features)
    assert model.params["alpha"] + model.params["beta"] > 0.98
    sample = model.sample(500, seed=1)[:, :, 1].astype(np.float64)
    assert np.median(np.abs(sample)) == pytest.approx(np.median(np.abs(returns)), rel=0.3)
    assert np.abs(sample).max() < 100 * np.abs(returns).max()


def test_last_start_continues_from_the_fitted_variance(fitted):
    model = fitted[0]
    last = GarchModel({"start": "last"})
    last.load_extra_state(model.extra_state())
    last.load_state_tensors(model.state_tensors())
    first_bar = last.sample(4000, seed=1, length=1)[:, 0, 1].astype(np.float64)
    assert np.std(first_bar) == pytest.approx(np.sqrt(model.last_variance), rel=0.1)


def test_unfitted_or_conditional_use_is_a_clear_error():
    with pytest.raises(ModelError, match="not fitted"):
        GarchModel().sample(1)
    with pytest.raises(ModelError, match="unconditional"):
        GarchModel().sample(1, conditions=np.zeros((1, 2)))


def test_simulated_shocks_are_capped_at_the_largest_training_residual(fitted):
    model = fitted[0]
    assert np.isfinite(model.max_shock) and model.max_shock > 3
    capped = model._shocks(np.random.default_rng(0), (2000, 200))
    assert np.abs(capped).max() <= model.max_shock
    model.config.cap_shocks = False
    try:
        uncapped = model._shocks(np.random.default_rng(0), (2000, 200))
    finally:
        model.config.cap_shocks = True
    assert np.abs(uncapped).max() > model.max_shock  # Student-t tails do pass it without the cap
