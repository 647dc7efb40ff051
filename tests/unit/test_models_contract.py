"""The one contract every registered model keeps (iterates ``MODELS``, so new models join automatically).

Train a few steps -> finite, changing losses; save -> load -> sample with the same seed -> the same numbers;
samples decode to valid candles (also long paths); a resumed run equals an uninterrupted one. Models of
per-bar feature vectors (``learns_bar_features``: glow) get their data from ``training_data(bars)`` and have no
candles to decode. Conditional models (``conditional``: cgan) train on one label per window (``conditions_for``)
and sample without conditions from their own label mix.
"""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest
import torch

from marketsynth.checkpoint import load_checkpoint, save_checkpoint
from marketsynth.data.bars import as_bars
from marketsynth.models.registry import MODELS, create_model
from marketsynth.representation import make_representation, windows_from_bars

SEQ_LEN = 8
# Small networks so that every model trains in a second on one core; keys a model lacks are left out.
TINY = {
    "dcgan": {"gen_channels": [16, 8], "disc_channels": [8, 16], "latent_dim": 8},
    "wgan-gp": {"latent_dim": 4, "hidden_size": 8, "num_layers": 1, "critic_hidden_size": 8, "n_critic": 2},
    "timegan": {"hidden_dim": 8, "num_layers": 1},
    "garch": {"burn_in": 50},
    "glow": {"seq_len": 1, "levels": 1, "steps_per_level": 2, "hidden": 8},
    "cgan": {"latent_dim": 4, "hidden_size": 8, "num_layers": 1, "critic_hidden_size": 8, "n_critic": 2,
             "embed_dim": 2},
    "autoregressive": {"hidden_size": 8, "num_layers": 1, "mixtures": 2, "head_size": 8, "train_len": 16,
                       "warmup": 4},
}
NOT_LOSSES = {"epoch", "seconds", "phase", "diversity", "val_w1"}


def tiny_config(name: str) -> dict:
    known = {f.name for f in fields(MODELS[name].Config)}
    wanted = {"seq_len": SEQ_LEN, "batch_size": 16, **TINY.get(name, {})}
    return {k: v for k, v in wanted.items() if k in known}


def conditions_for(model, n: int):
    """Labels cycling through a conditional model's regimes (None for unconditional models)."""
    return np.arange(n) % len(model.regimes) if model.conditional else None


def training_windows(model, bars, n: int):
    """(representation, windows) for this model: candle windows, or its own per-bar features."""
    if getattr(model, "learns_bar_features", False):
        return None, model.training_data(bars)[0][:n]
    rep = make_representation("log-returns", scaling=model.scaling).fit(bars)
    return rep, windows_from_bars(bars, rep, model.config.seq_len).features[:n]


@pytest.fixture(scope="module")
def bars(btc_csv) -> pd.DataFrame:
    return as_bars(pd.read_csv(btc_csv, skiprows=range(1, 5000), nrows=300))


@pytest.fixture(scope="module")
def trained(bars):
    """name -> (model, representation, windows, history), trained once per module for 2 epochs."""
    cache = {}

    def get(name: str):
        if name not in cache:
            model = create_model(name, tiny_config(name), seed=3)
            rep, windows = training_windows(model, bars, 64 if model.iterative else len(bars))
            before = {k: v.clone() for k, v in model.state_tensors().items()}
            history = model.fit(windows, conditions_for(model, len(windows)), epochs=2, progress=False)
            cache[name] = (model, rep, windows, history, before)
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(MODELS))
def test_training_gives_finite_changing_losses(name, trained):
    model, _, _, history, before = trained(name)
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
    model, rep, _, history, _ = trained(name)
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
    model, rep, _, _, _ = trained(name)
    samples = model.sample(6, seed=1, length=length)
    assert samples.shape == (6, length or model.config.seq_len, model.config.n_features)
    if rep is None:
        pytest.skip(f"{name} models per-bar feature vectors, which do not decode to candles")
    candles = rep.decode(samples, start_price=rep.last_close)
    o, h, low, c, v = np.moveaxis(candles, -1, 0)
    assert (h >= np.maximum(o, c)).all() and (np.maximum(o, c) >= np.minimum(o, c)).all()
    assert (np.minimum(o, c) >= low).all() and (low > 0).all() and (v >= 0).all()


@pytest.mark.parametrize("name", list(MODELS))
def test_resume_continues_exactly(name, bars, tmp_path):
    if not MODELS[name].iterative:
        pytest.skip(f"{name} is fitted in one pass; there is nothing to resume")
    config = tiny_config(name)
    _, windows = training_windows(create_model(name, config), bars, 48)

    straight = create_model(name, config, seed=5)
    conditions = conditions_for(straight, len(windows))
    full = straight.fit(windows, conditions, epochs=4, seed=5, out_dir=tmp_path / "a", checkpoint_every=2,
                        progress=False)

    def stop_after_two(epoch, row):
        if epoch == 2:
            raise KeyboardInterrupt  # an interrupted 4-epoch run (TimeGAN plans its phases from the total)

    first = create_model(name, config, seed=5)
    with pytest.raises(KeyboardInterrupt):
        first.fit(windows, conditions, epochs=4, seed=5, out_dir=tmp_path / "b", checkpoint_every=2,
                  progress=False, on_epoch=stop_after_two)
    second = create_model(name, config, seed=99)  # weights come from the checkpoint, not the constructor
    resumed = second.fit(windows, conditions, epochs=4, seed=5, out_dir=tmp_path / "b", resume=True,
                         progress=False)

    def losses(rows):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    assert losses(resumed.rows) == losses(full.rows)
    a, b = straight.state_tensors(), second.state_tensors()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{name}: {key} differs after resume"
    np.testing.assert_array_equal(load_checkpoint(tmp_path / "b").model.sample(3, seed=0), straight.sample(3, seed=0))
