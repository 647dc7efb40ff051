"""Checkpoint directories: what is written, exact round trips, no unpickling, and one-line errors."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

import marketsynth
from marketsynth.checkpoint import (
    is_checkpoint,
    load_checkpoint,
    read_config,
    restore_training_state,
    save_checkpoint,
)
from marketsynth.data.bars import as_bars
from marketsynth.errors import ModelError
from marketsynth.models.registry import create_model
from marketsynth.representation import make_representation, windows_from_bars
from marketsynth.training import train_loop

TINY = {"seq_len": 8, "batch_size": 16, "latent_dim": 4, "hidden_size": 8, "num_layers": 1,
        "critic_hidden_size": 8, "n_critic": 1}
FILES = ["config.json", "history.csv", "meta.json", "model_state.json", "optimizer.safetensors",
         "representation.json", "training_state.json", "weights.safetensors"]


@pytest.fixture(scope="module")
def run(btc_csv, tmp_path_factory):
    """A wgan-gp trained 2 epochs into a checkpoint directory."""
    bars = as_bars(pd.read_csv(btc_csv, skiprows=range(1, 5000), nrows=120))
    rep = make_representation("log-returns").fit(bars)
    windows = windows_from_bars(bars, rep, 8).features
    model = create_model("wgan-gp", TINY, seed=1)
    path = tmp_path_factory.mktemp("ckpt") / "run"
    train_loop(model, windows, epochs=2, out_dir=path, representation=rep,
               meta={"source": "file", "file": str(btc_csv)})
    return model, rep, path


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_directory_holds_every_file_with_versions_and_source(run):
    model, rep, path = run
    assert sorted(p.name for p in path.iterdir()) == FILES
    config = json.loads((path / "config.json").read_text())
    assert config["model"] == "wgan-gp" and config["epoch"] == 2 and config["model_config"]["hidden_size"] == 8
    assert config["training"]["epochs"] == 2
    meta = json.loads((path / "meta.json").read_text())
    assert meta["marketsynth_version"] == marketsynth.__version__ and meta["torch_version"] == torch.__version__
    assert meta["file"].endswith("BTCUSDT_1h.csv") and meta["seed"] == 0 and meta["device"] == "cpu"
    assert "created" in meta
    assert pd.read_csv(path / "history.csv")["epoch"].tolist() == [1, 2]


def test_load_restores_weights_and_representation_without_unpickling(run, monkeypatch):
    model, rep, path = run

    def forbidden(*args, **kwargs):
        raise AssertionError("a checkpoint must never be unpickled")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    loaded = load_checkpoint(path)
    for key, value in model.state_tensors().items():
        assert torch.equal(loaded.model.state_tensors()[key], value)
    assert loaded.representation.to_dict() == rep.to_dict()
    assert loaded.epoch == 2 and loaded.history.column("epoch") == [1, 2]
    np.testing.assert_array_equal(loaded.model.sample(4, seed=2), model.sample(4, seed=2))


def test_optimizer_state_round_trips_exactly(run):
    model, _, path = run
    fresh = create_model("wgan-gp", TINY, seed=9)
    state = restore_training_state(path, fresh)
    assert state["epoch"] == 2 and set(state["rng"]) == {"torch", "shuffle"}
    assert state["rng"]["torch"].dtype == torch.uint8
    for name, optimizer in model.optimizers().items():
        saved, restored = optimizer.state_dict(), fresh.optimizers()[name].state_dict()
        assert saved["param_groups"] == [{**g, "betas": tuple(g["betas"])} for g in restored["param_groups"]]
        for index, entries in saved["state"].items():
            for key, value in entries.items():
                assert torch.equal(restored["state"][index][key], value), (name, index, key)


def test_resume_into_a_differently_configured_model_is_refused(run):
    _, _, path = run
    with pytest.raises(ModelError, match="another config") as info:
        restore_training_state(path, create_model("wgan-gp", {**TINY, "hidden_size": 16}))
    one_line(info)


@pytest.mark.parametrize("damage, expected", [
    ("missing_dir", "not found"),
    ("foreign_dir", r"is not a marketsynth checkpoint \(missing config.json\); train one with 'marketsynth train'"),
    ("corrupt_config", r"config.json is corrupt"),
    ("foreign_config", "is not a marketsynth checkpoint"),
    ("unknown_model", "unknown model 'vae'"),
    ("corrupt_weights", r"weights.safetensors is corrupt"),
    ("missing_weights", r"incomplete checkpoint \(missing weights.safetensors\)"),
    ("weights_do_not_fit", "do not fit"),
    ("corrupt_representation", r"representation.json is corrupt"),
    ("a_file", "not a marketsynth checkpoint"),
])
def test_broken_checkpoints_are_one_line_model_errors(run, tmp_path, damage, expected):
    import shutil

    _, _, source = run
    path = tmp_path / "ckpt"
    shutil.copytree(source, path)
    config = json.loads((path / "config.json").read_text())
    if damage == "missing_dir":
        shutil.rmtree(path)
    elif damage == "foreign_dir":
        (path / "config.json").unlink()
    elif damage == "corrupt_config":
        (path / "config.json").write_text("{not json")
    elif damage == "foreign_config":
        (path / "config.json").write_text(json.dumps({"name": "something else"}))
    elif damage == "unknown_model":
        (path / "config.json").write_text(json.dumps({**config, "model": "vae"}))
    elif damage == "corrupt_weights":
        data = (path / "weights.safetensors").read_bytes()
        (path / "weights.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "missing_weights":
        (path / "weights.safetensors").unlink()
    elif damage == "weights_do_not_fit":
        config["model_config"]["hidden_size"] = 12
        (path / "config.json").write_text(json.dumps(config))
    elif damage == "corrupt_representation":
        (path / "representation.json").write_text("[1, 2")
    elif damage == "a_file":
        shutil.rmtree(path)
        path.write_text("hello")
    with pytest.raises(ModelError, match=expected) as info:
        load_checkpoint(path)
    one_line(info)


def test_weights_of_another_architecture_are_refused(run, tmp_path):
    _, rep, path = run
    other = create_model("dcgan", {"seq_len": 8, "gen_channels": [8, 8], "disc_channels": [8]})
    save_checkpoint(tmp_path / "dcgan", other, representation=rep)
    (tmp_path / "dcgan" / "weights.safetensors").write_bytes((path / "weights.safetensors").read_bytes())
    with pytest.raises(ModelError, match="has weights for critic, which dcgan does not have") as info:
        load_checkpoint(tmp_path / "dcgan")
    one_line(info)


def test_saving_into_a_foreign_directory_touches_nothing(run, tmp_path):
    model, rep, _ = run
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ModelError, match="exists and is not a marketsynth checkpoint"):
        save_checkpoint(tmp_path / "mine", model, representation=rep)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_an_interrupted_swap_is_undone(run, tmp_path):
    import shutil

    _, _, source = run
    shutil.copytree(source, tmp_path / ".run.previous")  # killed between moving the old one aside and renaming
    assert is_checkpoint(tmp_path / "run")
    assert read_config(tmp_path / "run")["epoch"] == 2
    assert not (tmp_path / ".run.previous").exists()
