"""``marketsynth train`` and ``marketsynth generate`` through the real CLI entry point (tiny models, few epochs)."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pytest
import torch

from marketsynth.cli.app import main
from tests.cli_helpers import assert_one_line_error, run

TINY_DCGAN = ["-O", "gen_channels=[16, 8]", "-O", "disc_channels=[8, 16]", "--latent-dim", "8"]
CANDLE_COLUMNS = ["sample_id", "timestep", "open", "high", "low", "close", "volume"]


@pytest.fixture(scope="module")
def small_csv(btc_csv, tmp_path_factory):
    """300 hourly candles in the Binance export format."""
    path = tmp_path_factory.mktemp("data") / "BTCUSDT_small.csv"
    pd.read_csv(btc_csv, skiprows=range(1, 5000), nrows=300).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def dcgan_run(small_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "dcgan"
    code = main(["train", "--model", "dcgan", "--csv", str(small_csv), "--seq-len", "8", "--epochs", "2",
                 "--batch-size", "32", *TINY_DCGAN, "--out", str(out)])
    assert code == 0
    return out


def assert_valid_candles(frame: pd.DataFrame) -> None:
    o, h, low, c, v = (frame[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    assert (h >= np.maximum(o, c)).all() and (np.minimum(o, c) >= low).all() and (low > 0).all() and (v >= 0).all()


# ---- train ---------------------------------------------------------------------------------------------------
def test_train_writes_a_checkpoint_and_prints_a_summary(dcgan_run, small_csv, tmp_path, capsys):
    assert json.loads((dcgan_run / "config.json").read_text())["epoch"] == 2
    meta = json.loads((dcgan_run / "meta.json").read_text())
    assert meta["file"] == str(small_csv) and meta["start"].startswith("2020-") and meta["bars"] == 300
    code, out, _ = run(capsys, "train", "--model", "dcgan", "--csv", small_csv, "--seq-len", 8, "--epochs", 1,
                       *TINY_DCGAN, "--out", tmp_path / "again")
    assert code == 0
    assert "trained dcgan: 1 epoch(s)" in out and "d_loss" in out and f"checkpoint: {tmp_path / 'again'}" in out


def test_config_file_and_default_out_dir(small_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "marketsynth.yaml").write_text(
        "model:\n  name: wgan-gp\n  seq_len: 8\n  latent_dim: 4\n"
        "  options: {hidden_size: 8, num_layers: 1, critic_hidden_size: 8, n_critic: 1}\n"
        "training:\n  epochs: 1\n  batch_size: 32\n")
    code, out, err = run(capsys, "train", "--config", "marketsynth.yaml", "--csv", small_csv)
    assert code == 0, err
    config = json.loads((tmp_path / "runs" / "wgan-gp-BTCUSDT_small" / "config.json").read_text())
    assert config["model"] == "wgan-gp" and config["model_config"]["hidden_size"] == 8
    assert config["model_config"]["batch_size"] == 32 and config["epoch"] == 1
    # options override the file; --resume continues to the new total
    code, out, err = run(capsys, "train", "--config", "marketsynth.yaml", "--csv", small_csv, "--epochs", 2,
                         "--resume")
    assert code == 0, err
    history = pd.read_csv(tmp_path / "runs" / "wgan-gp-BTCUSDT_small" / "history.csv")
    assert history["epoch"].tolist() == [1, 2]


# ---- generate ------------------------------------------------------------------------------------------------
def test_generate_csv_is_valid_and_byte_identical_per_seed(dcgan_run, tmp_path, capsys):
    paths = [tmp_path / name for name in ("a.csv", "b.csv", "c.csv")]
    for path, seed in zip(paths, (4, 4, 5), strict=True):
        code, out, err = run(capsys, "generate", "--model", dcgan_run, "--num-samples", 3, "--output", path,
                             "--seed", seed)
        assert code == 0, err
    assert paths[0].read_bytes() == paths[1].read_bytes() != paths[2].read_bytes()
    frame = pd.read_csv(paths[0])
    assert list(frame.columns) == [*CANDLE_COLUMNS, "bar_of_day"] and len(frame) == 3 * 8  # hourly: a daily cycle
    assert frame["bar_of_day"].between(0, 23).all()
    assert_valid_candles(frame)
    last_close = json.loads((dcgan_run / "representation.json").read_text())["last_close"]
    assert abs(np.log(frame.loc[0, "open"] / last_close)) < 0.5  # anchored at the last real close


def test_generate_parquet_long_paths_and_start_price(dcgan_run, tmp_path, capsys):
    for name in ("a.parquet", "b.parquet"):
        code, _, err = run(capsys, "generate", "-m", dcgan_run, "-n", 2, "-o", tmp_path / name, "--length", 20,
                           "--start-price", 100)
        assert code == 0, err
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    frame = duckdb.sql(f"SELECT * FROM read_parquet('{tmp_path / 'a.parquet'}')").df()
    assert list(frame.columns) == [*CANDLE_COLUMNS, "bar_of_day"] and len(frame) == 2 * 20
    assert frame.groupby("sample_id")["timestep"].max().tolist() == [19, 19]
    assert_valid_candles(frame)
    assert 50 < frame.loc[0, "open"] < 200


def test_generate_normalized_and_interpolated(dcgan_run, tmp_path, capsys):
    code, out, err = run(capsys, "generate", "-m", dcgan_run, "-n", 3, "-o", tmp_path / "n.csv", "--normalized",
                         "--interpolate", "--interp-steps", 4)
    assert code == 0, err
    frame = pd.read_csv(tmp_path / "n.csv")
    assert list(frame.columns) == ["sample_id", "timestep", "gap", "ret", "upper", "lower", "volume"]
    assert frame["sample_id"].nunique() == (3 - 1) * 4 + 1
    # model space: dcgan's standardised output on rank-Gaussian features (quantile-normal scaling)
    assert frame[["gap", "ret", "upper", "lower", "volume"]].abs().to_numpy().max() <= 10.0
    anchors = pd.read_csv(tmp_path / "n.csv").query("sample_id in [0, 4, 8]")
    code, _, _ = run(capsys, "generate", "-m", dcgan_run, "-n", 3, "-o", tmp_path / "s.csv", "--normalized")
    plain = pd.read_csv(tmp_path / "s.csv")
    features = ["gap", "ret", "upper", "lower", "volume"]
    np.testing.assert_allclose(anchors[features].to_numpy(), plain[features].to_numpy(), rtol=1e-5, atol=1e-6)


# ---- bad input: exit 2, one line, nothing overwritten ---------------------------------------------------------
def test_unknown_model_suggests_the_right_name(small_csv, tmp_path, capsys):
    code, _, err = run(capsys, "train", "--model", "wgan_gp", "--csv", small_csv, "--out", tmp_path / "x")
    assert_one_line_error(code, err, "unknown model 'wgan_gp' (did you mean wgan-gp?)")
    assert not (tmp_path / "x").exists()


def test_garch_refuses_a_representation_without_returns(small_csv, tmp_path, capsys):
    code, _, err = run(capsys, "train", "--model", "garch", "--csv", small_csv, "--representation", "minmax-ohlcv",
                       "--out", tmp_path / "g")
    assert_one_line_error(code, err, "garch needs the log-returns representation")
    assert not (tmp_path / "g").exists()


def test_missing_csv(tmp_path, capsys):
    code, _, err = run(capsys, "train", "--model", "dcgan", "--csv", tmp_path / "nope.csv", "--out", tmp_path / "x")
    assert_one_line_error(code, err, "nope.csv not found")


def test_corrupt_checkpoint_leaves_the_output_alone(dcgan_run, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(dcgan_run, broken)
    (broken / "weights.safetensors").write_bytes(b"\x00garbage")
    output = tmp_path / "samples.csv"
    output.write_text("previous content")
    code, _, err = run(capsys, "generate", "--model", broken, "-n", 2, "-o", output)
    assert_one_line_error(code, err, "weights.safetensors is corrupt")
    assert output.read_text() == "previous content"
    code, _, err = run(capsys, "generate", "--model", tmp_path, "-n", 2, "-o", output)
    assert_one_line_error(code, err, "is not a marketsynth checkpoint (missing config.json)")
    assert output.read_text() == "previous content"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_on_a_cpu_machine(small_csv, dcgan_run, tmp_path, capsys):
    code, _, err = run(capsys, "train", "--model", "dcgan", "--csv", small_csv, "--device", "cuda",
                       "--out", tmp_path / "x")
    assert_one_line_error(code, err, "sees no CUDA device")
    assert not (tmp_path / "x").exists()
    code, _, err = run(capsys, "generate", "-m", dcgan_run, "-o", tmp_path / "s.csv", "--device", "cuda")
    assert_one_line_error(code, err, "sees no CUDA device")
    assert not (tmp_path / "s.csv").exists()


def test_existing_checkpoint_and_resume_without_one(dcgan_run, small_csv, tmp_path, capsys):
    before = (dcgan_run / "weights.safetensors").read_bytes()
    code, _, err = run(capsys, "train", "--model", "dcgan", "--csv", small_csv, "--out", dcgan_run)
    assert_one_line_error(code, err, "already holds a checkpoint; pass --resume to continue it, --overwrite")
    assert (dcgan_run / "weights.safetensors").read_bytes() == before
    code, _, err = run(capsys, "train", "--model", "dcgan", "--csv", small_csv, "--out", tmp_path / "empty",
                       "--resume")
    assert_one_line_error(code, err, "no checkpoint in")
    code, _, err = run(capsys, "train", "--model", "dcgan", "--csv", small_csv, "--out", dcgan_run, "--resume",
                       "--seq-len", 12)
    assert_one_line_error(code, err, "--resume continues the checkpoint's settings, but seq_len=12")
    assert (dcgan_run / "weights.safetensors").read_bytes() == before


def test_bad_output_name(dcgan_run, tmp_path, capsys):
    code, _, err = run(capsys, "generate", "-m", dcgan_run, "-o", tmp_path / "samples.xlsx")
    assert_one_line_error(code, err, "use a .csv or .parquet file name")


# ---- stored candles, validation, warnings ---------------------------------------------------------------------
def test_train_on_stored_candles_with_validation(small_csv, tmp_path, capsys):
    from marketsynth.data.bars import as_bars
    from marketsynth.data.store import open_store

    store = tmp_path / "candles.duckdb"
    with open_store(store) as db:
        db.write_bars("binance", "BTCUSDT", "1h", as_bars(pd.read_csv(small_csv)))
    code, out, err = run(capsys, "train", "--model", "dcgan", "--symbol", "btcusdt", "--interval", "1h", "--store",
                         store, "--start", "2020-04-05", "--seq-len", 8, "--epochs", 2, *TINY_DCGAN,
                         "--val-fraction", 0.2, "--out", tmp_path / "run")
    assert code == 0, err
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["exchange"] == "binance" and meta["symbol"] == "BTCUSDT" and meta["interval"] == "1h"
    assert meta["start"].startswith("2020-04-05")
    assert "val_w1" in pd.read_csv(tmp_path / "run" / "history.csv").columns
    code, _, err = run(capsys, "train", "--model", "dcgan", "--symbol", "ETHUSDT", "--interval", "1h", "--store",
                       store, "--out", tmp_path / "eth")
    assert_one_line_error(code, err, "has no ETHUSDT 1h candles; fetch them")


def test_training_warnings_are_one_line_each(capsys):
    import warnings

    from marketsynth.cli.model_cmds import one_line_warnings
    from marketsynth.training import TrainingWarning

    with one_line_warnings():
        warnings.warn("samples have collapsed; try a lower --gen-lr", TrainingWarning, stacklevel=1)
    assert capsys.readouterr().err == "warning: samples have collapsed; try a lower --gen-lr\n"
