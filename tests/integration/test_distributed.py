"""``torchrun --nproc_per_node 2 marketsynth train`` on CPU (gloo): both ranks train, and end in step.

dcgan, wgan-gp and autoregressive wrap their networks in DistributedDataParallel; for wgan-gp that includes the critic,
whose gradient penalty differentiates through the DDP module (torch.autograd.grad with create_graph) before
the critic loss's backward. TimeGAN averages each optimiser's gradients with an explicit all_reduce instead.
Ranks get different shards and different noise, so identical final weights mean the gradients really were
averaged.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pandas as pd
import pytest

from marketsynth.checkpoint import load_checkpoint

OPTIONS = {
    "dcgan": ["-O", "gen_channels=[16, 8]", "-O", "disc_channels=[8, 16]", "--latent-dim", "8"],
    "wgan-gp": ["--latent-dim", "4", "-O", "hidden_size=8", "-O", "num_layers=1", "-O", "critic_hidden_size=8",
                "-O", "n_critic=2"],
    "timegan": ["-O", "hidden_dim=8", "-O", "num_layers=1"],
    # train_len = seq_len: one training sequence per window, so the step count below holds as for the others
    "autoregressive": ["-O", "hidden_size=8", "-O", "num_layers=1", "-O", "mixtures=2", "-O", "head_size=8",
                       "-O", "train_len=8"],
}


@pytest.fixture(scope="module")
def small_csv(btc_csv, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "BTCUSDT_small.csv"
    pd.read_csv(btc_csv, skiprows=range(1, 5000), nrows=200).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("model", list(OPTIONS))
def test_two_cpu_ranks_train_in_step(model, small_csv, tmp_path):
    out = tmp_path / "run"
    epochs = 3 if model == "timegan" else 2  # TimeGAN: one epoch of each phase
    env = {**os.environ, "MARKETSYNTH_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "marketsynth.cli.app", "train", "--model", model, "--csv", str(small_csv), "--seq-len", "8",
               "--epochs", str(epochs), "--batch-size", "16", *OPTIONS[model], "--out", str(out)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count(f"trained {model}") == 1  # only rank 0 reports

    report = json.loads((out / "meta.json").read_text())["distributed"]
    assert report["world_size"] == 2 and report["backend"] == "gloo"
    assert report["weights_in_sync"] is True
    assert report["weight_digests"][0] == report["weight_digests"][1]
    steps = report["steps_per_rank"]
    assert steps[0] == steps[1] > 0  # both ranks trained, on equal shards
    windows = json.loads((out / "meta.json").read_text())["windows"]
    assert steps[0] == epochs * math.ceil(math.ceil(windows / 2) / 16)  # each rank sees half the windows per epoch
    loaded = load_checkpoint(out)
    assert loaded.history.column("epoch") == list(range(1, epochs + 1))
