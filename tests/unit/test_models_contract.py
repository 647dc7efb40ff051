"""The one contract every registered model keeps (iterates ``MODELS``, so new models join automatically).

Every model takes the path ``api.train`` takes: ``representation_for`` -> ``configure`` from the data ->
``training_arrays`` from the gap-free bar segments -> ``training.fit_model``. Then: finite, changing losses;
save -> load -> sample with the same seed -> the same numbers; samples decode to valid candles (also long paths;
models of per-bar features have none to decode); a resumed run equals an uninterrupted one; the whole public API
(``api.train`` -> checkpoint -> ``api.load`` -> ``api.sample``); and the temperature contract: a ``Temperature``
model's VaR and CVaR rise with the temperature on a fixed seed, every other model refuses a temperature.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from marketsynth import api
from marketsynth.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from marketsynth.data.bars import as_bars, valid_candles
from marketsynth.errors import ModelError
from marketsynth.models.capabilities import Temperature
from marketsynth.models.data import TrainingArrays, TrainingData
from marketsynth.models.registry import MODELS, models_with
from marketsynth.risk.measures import tail_risk
from marketsynth.risk.scenarios import simulate_paths
from marketsynth.training import fit_model

SEQ_LEN = 8
# Small networks so that every model trains in a second on one core. Every registered model needs an entry, and
# every key must be one of its settings (creating the model fails loudly otherwise).
TINY = {
    "dcgan": {"gen_channels": [16, 8], "disc_channels": [8, 16], "latent_dim": 8},
    "wgan-gp": {"latent_dim": 4, "hidden_size": 8, "num_layers": 1, "critic_hidden_size": 8, "n_critic": 2},
    "timegan": {"hidden_dim": 8, "num_layers": 1},
    "garch": {"vol_bins": 3, "shock_bins": 3},  # 3 x 3 cells keep ~30 bars per cell on 300 bars
    "glow": {"seq_len": 1, "levels": 1, "steps_per_level": 2, "hidden": 8},
    "cgan": {"latent_dim": 4, "hidden_size": 8, "num_layers": 1, "critic_hidden_size": 8, "n_critic": 2,
             "embed_dim": 2},
    "autoregressive": {"hidden_size": 8, "num_layers": 1, "mixtures": 2, "head_size": 8, "train_len": 16,
                       "warmup": 4},
}
NOT_LOSSES = {"epoch", "seconds", "phase", "diversity", "val_w1"}
TEMPERATURES = (0.5, 1.0, 2.0)


def tiny_config(name: str) -> dict:
    if name not in TINY:
        pytest.fail(f"{name} is registered but has no TINY settings in {__file__}; add them")
    return {"seq_len": SEQ_LEN, "batch_size": 16, **TINY[name]}


def prepared(name: str, bars: pd.DataFrame, *, seed: int, limit: int | None = None, run_seed: int | None = None):
    """(model, representation, arrays) through the hooks, as ``api.train`` prepares them; at most ``limit``
    training items. ``run_seed``: the run's seed when the weights come from elsewhere (a resume)."""
    cls = MODELS[name]
    rep = cls.representation_for("log-returns")
    rep = rep.fit(bars) if rep is not None else None
    data = TrainingData(bars, representation=rep)
    model = cls(cls.configure(tiny_config(name), data), seed=seed)
    model.seed = seed if run_seed is None else run_seed  # as api.train does on resume (cgan's balanced order)
    arrays = model.training_arrays(data)
    if limit is not None and model.iterative:
        conditions = None if arrays.conditions is None else arrays.conditions[:limit]
        arrays = TrainingArrays(arrays.train[:limit], conditions, arrays.val, arrays.meta, arrays.kind)
    return model, rep, arrays


@pytest.fixture(scope="module")
def bars(btc_csv) -> pd.DataFrame:
    return as_bars(pd.read_csv(btc_csv, skiprows=range(1, 5000), nrows=300))


@pytest.fixture(scope="module")
def trained(bars):
    """name -> (model, representation, history, weights before), trained once per module for 2 epochs."""
    cache = {}

    def get(name: str):
        if name not in cache:
            model, rep, arrays = prepared(name, bars, seed=3, limit=64)
            before = {k: v.clone() for k, v in model.state_tensors().items()}
            history = fit_model(model, arrays, epochs=2)
            cache[name] = (model, rep, history, before)
        return cache[name]

    return get


def test_every_model_has_tiny_settings_that_it_knows():
    for name, cls in MODELS.items():
        cls(tiny_config(name))  # unknown keys are a ModelError here
        assert isinstance(cls.default_epochs, int) and cls.default_epochs >= 1, name


@pytest.mark.parametrize("name", list(MODELS))
def test_training_gives_finite_changing_losses(name, trained):
    model, _, history, before = trained(name)
    assert history.rows, "fit returned no history"
    for row in history.rows:
        for key, value in row.items():
            if isinstance(value, float):
                assert math.isfinite(value), f"{name}: {key} = {value} in epoch {row.get('epoch')}"
    after = model.state_tensors()
    if model.iterative:
        assert len(history.rows) == 2
        first, last = history.rows
        shared = [k for k in first if k in last and k not in NOT_LOSSES]
        assert shared, f"{name} reports no losses"
        assert any(first[k] != last[k] for k in shared), f"{name}: losses did not change between epochs"
        assert any(not torch.equal(before[k], after[k]) for k in before), f"{name}: no weight changed"


@pytest.mark.parametrize("name", list(MODELS))
def test_save_load_sample_gives_identical_numbers(name, trained, tmp_path):
    model, rep, history, _ = trained(name)
    save_checkpoint(tmp_path / "ckpt", model, representation=rep, history=history, epoch=len(history.rows))
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.model.name == name
    assert (loaded.representation is None) if rep is None else loaded.representation.to_dict() == rep.to_dict()
    original = model.sample(5, seed=11)
    np.testing.assert_array_equal(loaded.model.sample(5, seed=11), original)
    np.testing.assert_array_equal(model.sample(5, seed=11), original)
    assert not np.array_equal(model.sample(5, seed=12), original), "another seed gave the same samples"
    assert original.shape == (5, model.config.seq_len, model.config.n_features) and np.isfinite(original).all()


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("length", [None, 20])
def test_samples_decode_to_valid_candles(name, length, trained):
    model, rep, _, _ = trained(name)
    samples = model.sample(6, seed=1, length=length)
    assert samples.shape == (6, length or model.config.seq_len, model.config.n_features)
    if rep is None:
        pytest.skip(f"{name} models per-bar feature vectors, which do not decode to candles")
    assert valid_candles(rep.decode(samples, start_price=rep.last_close)).all()


@pytest.mark.parametrize("name", list(MODELS))
def test_sample_checks_its_arguments_once_for_every_model(name, trained):
    model, _, _, _ = trained(name)
    for bad in ({"n": 0}, {"n": 2, "length": 0}):
        with pytest.raises(ModelError, match="must be at least 1"):
            model.sample(bad.pop("n"), **bad)
    with pytest.raises(ModelError, match="conditions|daily positions|regime label"):
        model.sample(2, conditions=np.zeros((3, 7)))


@pytest.mark.parametrize("name", list(MODELS))
def test_resume_continues_exactly(name, bars, tmp_path):
    if not MODELS[name].iterative:
        pytest.skip(f"{name} is fitted in one pass; there is nothing to resume")
    straight, _, arrays = prepared(name, bars, seed=5, limit=48)
    full = fit_model(straight, arrays, epochs=4, seed=5, out=tmp_path / "a", checkpoint_every=2)

    def stop_after_two(epoch, row):
        if epoch == 2:
            raise KeyboardInterrupt  # an interrupted 4-epoch run (TimeGAN plans its phases from the total)

    first, _, arrays = prepared(name, bars, seed=5, limit=48)
    with pytest.raises(KeyboardInterrupt):
        fit_model(first, arrays, epochs=4, seed=5, out=tmp_path / "b", checkpoint_every=2, on_epoch=stop_after_two)
    second, _, arrays = prepared(name, bars, seed=99, limit=48, run_seed=5)  # weights come from the checkpoint
    resumed = fit_model(second, arrays, epochs=4, seed=5, out=tmp_path / "b", resume=True)

    def losses(rows):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    assert losses(resumed.rows) == losses(full.rows)
    a, b = straight.state_tensors(), second.state_tensors()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{name}: {key} differs after resume"
    np.testing.assert_array_equal(load_checkpoint(tmp_path / "b").model.sample(3, seed=0), straight.sample(3, seed=0))


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_through_the_public_api(name, bars, tmp_path):
    """api.train -> checkpoint -> api.load -> api.sample: valid candles (feature rows for models of bar
    features), the same file for the same seed, and the training data described in the checkpoint."""
    cls = MODELS[name]
    result = api.train(name, bars, config=tiny_config(name), epochs=1, out=tmp_path / "run", seed=2)
    checkpoint = api.load(tmp_path / "run")
    assert checkpoint.model.name == name and checkpoint.meta["windows"] == result.n_windows > 0
    assert result.items.startswith(f"{result.n_windows} ")
    frame = api.sample(checkpoint, 4, seed=1, length=10, normalized=not cls.models_candles)
    assert frame["sample_id"].nunique() == 4 and frame["timestep"].nunique() == 10
    if cls.models_candles:
        assert valid_candles(frame[["open", "high", "low", "close", "volume"]].to_numpy()).all()
    else:
        assert np.isfinite(frame.drop(columns=["sample_id", "timestep"]).to_numpy()).all()
    again = api.sample(tmp_path / "run", 4, seed=1, length=10, normalized=not cls.models_candles)
    pd.testing.assert_frame_equal(frame, again)


@pytest.mark.parametrize("name", models_with(Temperature))
def test_var_and_cvar_rise_with_the_temperature(name, trained):
    """Temperature has a defined meaning that widens the distribution, so a hotter run is a stress: on a fixed
    seed, VaR and CVaR (95% and 99%) of 24-bar scenarios grow from T=0.5 to 1 to 2."""
    model, rep, _, _ = trained(name)
    checkpoint = Checkpoint(Path("in-memory"), model, rep, {})
    tails = [tail_risk(simulate_paths(checkpoint, 2000, 24, temperature=t, seed=4)[:, -1]) for t in TEMPERATURES]
    for level in range(len(tails[0])):
        for key in ("var", "cvar"):
            values = [getattr(t[level], key) for t in tails]
            assert values[0] < values[1] < values[2], f"{name}: {key} {tails[0][level].level:.0%} {values}"


@pytest.mark.parametrize("name", [n for n in MODELS if n not in models_with(Temperature)])
def test_models_without_a_temperature_refuse_one(name, trained):
    model, _, _, _ = trained(name)
    with pytest.raises(ModelError, match=f"^{name} has no sampling temperature; ") as info:
        model.sample(2, temperature=2.0)
    assert "\n" not in str(info.value)
    model.sample(2)  # no temperature: as trained
