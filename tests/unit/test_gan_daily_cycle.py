"""The GANs' time-of-day condition (``GenerativeModel.daily_cycle``): ``configure`` sets ``season`` for intraday
bars, training windows carry their first bar's position in the day, and samples start where they are asked to
(uniformly drawn positions otherwise); new runs on rank-Gaussian features get wgan-gp's standardised output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from marketsynth.data.bars import as_bars
from marketsynth.errors import ModelError
from marketsynth.generation import interpolate_paths
from marketsynth.models.data import TrainingData
from marketsynth.models.registry import MODELS
from marketsynth.training import fit_model

TINY = {
    "dcgan": {"gen_channels": [16, 8], "disc_channels": [8, 16], "latent_dim": 8},
    "wgan-gp": {"latent_dim": 4, "hidden_size": 8, "num_layers": 1, "critic_hidden_size": 8, "n_critic": 1},
    "cgan": {"latent_dim": 4, "hidden_size": 8, "num_layers": 1, "critic_hidden_size": 8, "n_critic": 1,
             "embed_dim": 2},
}


@pytest.fixture(scope="module")
def bars(btc_csv) -> pd.DataFrame:
    return as_bars(pd.read_csv(btc_csv, skiprows=range(1, 3000), nrows=240))


@pytest.fixture(scope="module")
def trained(bars):
    cache = {}

    def get(name: str):
        if name not in cache:
            cls = MODELS[name]
            rep = cls.representation_for("log-returns").fit(bars)
            data = TrainingData(bars, representation=rep)
            model = cls(cls.configure({"seq_len": 8, "batch_size": 16, **TINY[name]}, data), seed=1)
            arrays = model.training_arrays(data)
            fit_model(model, arrays, epochs=1)
            cache[name] = (model, rep, data, arrays)
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(TINY))
def test_hourly_bars_give_a_daily_cycle_and_windows_their_start_position(name, trained, bars):
    model, rep, data, arrays = trained(name)
    assert model.config.season == 24 and model.clock_season == 24
    assert rep.scaling.startswith("quantile-")
    phases = arrays.conditions if arrays.conditions.ndim == 1 else arrays.conditions[:, 1]
    starts = data.split(8).train.start_index
    expected = pd.DatetimeIndex(bars["time"].to_numpy()[starts]).hour
    if name != "cgan":  # cgan's windows are reordered by its balanced sampling
        np.testing.assert_array_equal(phases, expected)
    assert set(np.unique(phases)) <= set(range(24))


@pytest.mark.parametrize("name", ["dcgan", "wgan-gp"])
def test_samples_start_at_the_given_position_in_the_day(name, trained):
    model, _, _, _ = trained(name)
    at_five = model.sample(3, conditions=5, seed=2)
    np.testing.assert_array_equal(at_five, model.sample(3, conditions=[5, 5, 5], seed=2))
    assert not np.array_equal(at_five, model.sample(3, conditions=17, seed=2))
    drawn = model.sample(3, seed=2)
    assert drawn.shape == at_five.shape and np.isfinite(drawn).all()
    long = model.sample(2, conditions=[0, 12], seed=4, length=20)
    assert long.shape == (2, 20, model.config.n_features) and np.isfinite(long).all()
    for bad in (24, -1, [1, 2]):
        with pytest.raises(ModelError, match="start positions in the day"):
            model.sample(3, conditions=bad)


def test_the_clock_channels_are_sine_and_cosine_of_each_step(trained):
    model, _, _, _ = trained("wgan-gp")
    clock = model.day_clock(torch.tensor([0, 18]), 8)
    assert clock.shape == (2, 8, 2)
    angle = 2 * np.pi * (np.array([[0], [18]]) + np.arange(8)) / 24
    np.testing.assert_allclose(clock[..., 0].numpy(), np.sin(angle), atol=1e-6)
    np.testing.assert_allclose(clock[..., 1].numpy(), np.cos(angle), atol=1e-6)


def test_cgan_keeps_regime_conditions_and_draws_the_time_of_day(trained):
    model, _, _, arrays = trained("cgan")
    assert arrays.conditions.shape[1] == 2  # (label, start position) per window
    crash = model.encode_conditions(["crash"] * 4)
    samples = model.sample(4, conditions=crash, seed=3)
    np.testing.assert_array_equal(samples, model.sample(4, conditions=crash, seed=3))


def test_new_wgan_runs_standardise_their_output_and_old_configs_do_not(trained):
    model, _, _, _ = trained("wgan-gp")
    assert model.config.output_norm and model.config.noise_skip
    old = MODELS["wgan-gp"]({"seq_len": 8, **TINY["wgan-gp"]})
    assert not old.config.output_norm and old.config.season == 0  # what checkpoints saved before load as
    with pytest.raises(ModelError, match="unconditional"):
        old.sample(2, conditions=3)


def test_new_dcgan_runs_add_step_noise_and_a_standardised_output_old_configs_keep_the_tanh(trained):
    model, rep, _, _ = trained("dcgan")
    assert rep.scaling == "quantile-normal" and model.config.output_norm and model.config.step_noise == 4
    assert model.sample_latent(2).shape == (2, model.config.latent_dim + 8 * 4)
    assert isinstance(model.generator.body[-1], torch.nn.BatchNorm1d)
    old = MODELS["dcgan"]({"seq_len": 8, **TINY["dcgan"]})
    assert isinstance(old.generator.body[-1], torch.nn.Tanh) and old.generator.skip is None
    assert old.sample_latent(2).shape == (2, 8)


@pytest.mark.parametrize("name", ["dcgan", "wgan-gp"])
def test_interpolation_anchors_are_the_samples_of_the_same_seed(name, trained):
    model, _, _, _ = trained(name)
    walk = interpolate_paths(model, 3, 4, seed=6)
    np.testing.assert_allclose(walk[[0, 4, 8]], model.sample(3, seed=6), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.default_start_phases(3, 6), model.default_start_phases(3, 6))


def test_new_wgan_runs_hold_part_of_the_noise_for_the_whole_window(trained):
    """``window_noise``: the last channels of the noise are drawn once per path, so the generator sees them held."""
    model, *_ = trained("wgan-gp")
    assert model.config.window_noise == 1  # a quarter of TINY's latent_dim 4
    z = torch.randn(3, 5, 4)
    held = model._held_noise(z)
    assert torch.equal(held[..., :3], z[..., :3]) and torch.equal(held[..., 3:], z[:, :1, 3:].expand(-1, 5, -1))
    old = MODELS["wgan-gp"]({**TINY["wgan-gp"], "seq_len": 8, "n_features": 5})  # a config saved before it
    assert old.config.window_noise == 0 and torch.equal(old._held_noise(z), z)
    with pytest.raises(ModelError, match="window_noise"):
        MODELS["wgan-gp"]({**TINY["wgan-gp"], "window_noise": 9})
