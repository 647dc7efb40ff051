"""The shared training loop: determinism, exact resume, history, checkpoints, warnings, overfitting a tiny set."""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from marketsynth.checkpoint import load_checkpoint, read_config
from marketsynth.data.bars import as_bars
from marketsynth.errors import ModelError
from marketsynth.models.base import GenerativeModel, ModelConfig
from marketsynth.models.registry import create_model
from marketsynth.progress import Recorder
from marketsynth.representation import make_representation, windows_from_bars
from marketsynth.training import DistributedInfo, TrainingWarning, marginal_w1, resolve_device, train_loop
from marketsynth.training.distributed import epoch_batches

SEQ_LEN = 8
DCGAN_TINY = {"seq_len": SEQ_LEN, "batch_size": 16, "gen_channels": [16, 8], "disc_channels": [8, 16],
              "latent_dim": 8}


@pytest.fixture(scope="module")
def bars(btc_csv) -> pd.DataFrame:
    return as_bars(pd.read_csv(btc_csv, skiprows=range(1, 5000), nrows=200))


def windows_for(bars, scaling: str, n: int = 64) -> np.ndarray:
    rep = make_representation("log-returns", scaling=scaling).fit(bars)
    return windows_from_bars(bars, rep, SEQ_LEN).features[:n]


def weights_equal(a: GenerativeModel, b: GenerativeModel) -> bool:
    ta, tb = a.state_tensors(), b.state_tensors()
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def without_seconds(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


# ---- determinism and resume ----------------------------------------------------------------------------------
def test_same_seed_gives_identical_history_and_weights(bars):
    windows = windows_for(bars, "minmax")
    runs = []
    for seed in (7, 7, 8):
        model = create_model("dcgan", DCGAN_TINY, seed=seed)
        runs.append((model, train_loop(model, windows, epochs=2, seed=seed)))
    (a, ha), (b, hb), (c, hc) = runs
    assert without_seconds(ha.rows) == without_seconds(hb.rows) and weights_equal(a, b)
    assert without_seconds(ha.rows) != without_seconds(hc.rows) and not weights_equal(a, c)


def test_two_epochs_then_resume_to_four_equals_four_epochs(bars, tmp_path):
    windows = windows_for(bars, "minmax")
    straight = create_model("dcgan", DCGAN_TINY)
    full = train_loop(straight, windows, epochs=4)
    first = create_model("dcgan", DCGAN_TINY)
    train_loop(first, windows, epochs=2, out_dir=tmp_path / "run")
    assert read_config(tmp_path / "run")["epoch"] == 2
    second = create_model("dcgan", DCGAN_TINY, seed=1)
    resumed = train_loop(second, windows, epochs=4, out_dir=tmp_path / "run", resume=True)
    assert without_seconds(resumed.rows) == without_seconds(full.rows)
    assert weights_equal(straight, second)
    assert pd.read_csv(tmp_path / "run" / "history.csv")["epoch"].tolist() == [1, 2, 3, 4]


def test_resume_without_checkpoint_is_one_line_error(bars, tmp_path):
    model = create_model("dcgan", DCGAN_TINY)
    with pytest.raises(ModelError, match="no checkpoint in .* to resume") as info:
        train_loop(model, windows_for(bars, "minmax"), epochs=2, out_dir=tmp_path / "none", resume=True)
    assert "\n" not in str(info.value)


def test_history_csv_and_periodic_checkpoints(bars, tmp_path):
    seen = []
    model = create_model("dcgan", DCGAN_TINY)
    train_loop(model, windows_for(bars, "minmax"), epochs=3, out_dir=tmp_path / "run", checkpoint_every=2,
               history_path=tmp_path / "live.csv",
               on_epoch=lambda epoch, row: seen.append((epoch, read_config(tmp_path / "run")["epoch"])))
    assert seen == [(1, 0), (2, 2), (3, 3)]  # a checkpoint at the start, every 2 epochs and at the end
    history = pd.read_csv(tmp_path / "live.csv")
    assert list(history.columns[:5]) == ["epoch", "d_loss", "g_loss", "d_real", "d_fake"]
    assert "seconds" in history.columns and len(history) == 3
    assert load_checkpoint(tmp_path / "run").history.column("epoch") == [1, 2, 3]


def test_a_failed_save_leaves_the_previous_checkpoint(bars, tmp_path, monkeypatch):
    import marketsynth.checkpoint as checkpoint

    real_save = checkpoint.save_file
    model = create_model("dcgan", DCGAN_TINY)

    def break_at_epoch_two(epoch, row):
        if epoch == 1:
            monkeypatch.setattr(checkpoint, "save_file", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))

    with pytest.raises(OSError, match="disk full"):
        train_loop(model, windows_for(bars, "minmax"), epochs=3, out_dir=tmp_path / "run", checkpoint_every=1,
                   on_epoch=break_at_epoch_two)
    monkeypatch.setattr(checkpoint, "save_file", real_save)
    assert read_config(tmp_path / "run")["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary directory left behind
    load_checkpoint(tmp_path / "run")
    resumed = train_loop(create_model("dcgan", DCGAN_TINY), windows_for(bars, "minmax"), epochs=3,
                         out_dir=tmp_path / "run", resume=True)
    assert [row["epoch"] for row in resumed.rows] == [1, 2, 3]


def test_the_loop_reports_the_train_stage_through_the_progress_protocol(bars):
    recorder = Recorder()
    train_loop(create_model("dcgan", DCGAN_TINY), windows_for(bars, "minmax", n=48), epochs=2, progress=recorder)
    assert recorder.stages() == ["train"] and recorder.steps("train") == 2 * 3  # 48 windows in batches of 16
    start, *advances, finish = recorder.calls
    assert start[2]["total"] == 6 and "dcgan epoch 1/2" in start[2]["note"]
    assert "epoch 2/2" in advances[-1][2]["note"] and "d_loss" in advances[-1][2]["note"]
    assert finish[0] == "finish" and finish[2]["note"].startswith("dcgan: 2 epoch(s)")


# ---- warnings ------------------------------------------------------------------------------------------------
class Scripted(GenerativeModel):
    """Reports scripted losses per epoch; samples are constant when ``collapsed``."""

    name = "scripted"
    Config: ClassVar[type[ModelConfig]] = ModelConfig

    def __init__(self, script, collapsed=False):
        super().__init__({"seq_len": SEQ_LEN, "batch_size": 32})
        self.script, self.collapsed = script, collapsed
        self.net_ = nn.Linear(1, 1)

    def modules(self):
        return {"net": self.net_}

    def train_step(self, batch, conditions, *, epoch, total_epochs):
        return dict(self.script[epoch])

    def _sample(self, n, conditions, *, seed, length):
        shape = (n, length, 5)
        return np.zeros(shape) if self.collapsed else np.random.default_rng(seed).normal(size=shape)


def run_scripted(script, collapsed=False, **options):
    windows = np.random.default_rng(0).normal(size=(64, SEQ_LEN, 5))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_loop(Scripted(script, collapsed), windows, epochs=len(script), **options)
    return [str(w.message) for w in caught if issubclass(w.category, TrainingWarning)]


def test_warns_once_when_the_discriminator_wins():
    messages = run_scripted([{"d_loss": 0.01, "g_loss": 3.0}] * 5)
    assert len(messages) == 1 and "discriminator has separated real from fake" in messages[0]
    assert "--disc-lr" in messages[0] and "\n" not in messages[0]


def test_warns_when_the_generator_loss_explodes():
    messages = run_scripted([{"d_loss": 0.5, "g_loss": 1.0}, {"d_loss": 0.5, "g_loss": 1.5},
                             {"d_loss": 0.5, "g_loss": 500.0}])
    assert len(messages) == 1 and "g_loss has exploded" in messages[0]


def test_warns_when_samples_collapse():
    messages = run_scripted([{"d_loss": 0.5, "g_loss": 1.0}] * 6, collapsed=True)
    assert len(messages) == 1 and "samples have collapsed" in messages[0]
    assert not run_scripted([{"d_loss": 0.5, "g_loss": 1.0}] * 6, collapsed=False)


def test_non_finite_loss_stops_with_the_checkpoint_intact(tmp_path):
    script = [{"d_loss": 0.5, "g_loss": 1.0}, {"d_loss": 0.5, "g_loss": float("nan")}]
    with pytest.raises(ModelError, match="diverged at epoch 2: g_loss") as info:
        run_scripted(script, out_dir=tmp_path / "run", checkpoint_every=1)
    assert "\n" not in str(info.value)
    assert read_config(tmp_path / "run")["epoch"] == 1


# ---- batches, devices ----------------------------------------------------------------------------------------
def test_distributed_shards_cover_every_window_once():
    shards = []
    for rank in (0, 1):
        generator = torch.Generator().manual_seed(3)
        shards.append(torch.cat(epoch_batches(10, 3, generator, DistributedInfo(rank, 2))).tolist())
    assert len(shards[0]) == len(shards[1]) == 5
    assert sorted(shards[0] + shards[1]) == list(range(10))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_is_a_one_line_error():
    with pytest.raises(ModelError, match="sees no CUDA device.*use --device cpu"):
        resolve_device("cuda")


# ---- each of our models can overfit a tiny data set ----------------------------------------------------------
@pytest.mark.parametrize("name, options, epochs", [
    # dcgan: the linear output ``configure`` gives new runs on its rank-Gaussian features (the seed's tanh cannot
    # reach them)
    ("dcgan", {"gen_channels": [32, 16], "disc_channels": [16, 32], "latent_dim": 8, "gen_lr": 1e-3,
               "disc_lr": 1e-3, "output_norm": True, "step_noise": 4}, 20),
    ("wgan-gp", {"latent_dim": 4, "hidden_size": 16, "num_layers": 1, "critic_hidden_size": 16, "n_critic": 3,
                 "gen_lr": 5e-3, "disc_lr": 5e-3}, 60),
])
def test_model_overfits_a_tiny_set(name, options, epochs, bars):
    model = create_model(name, {"seq_len": SEQ_LEN, "batch_size": 32, **options})
    windows = windows_for(bars, model.scaling, n=64)
    before = marginal_w1(model.sample(256, seed=5), windows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrainingWarning)
        history = train_loop(model, windows, epochs=epochs, val_windows=windows)
    after = marginal_w1(model.sample(256, seed=5), windows)
    assert after < 0.6 * before, f"{name}: distance to the training set {before:.3f} -> {after:.3f}"
    val = history.column("val_w1")
    assert np.mean(val[-3:]) < 0.6 * val[0]
