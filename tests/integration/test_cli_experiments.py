"""``marketsynth augment`` and ``marketsynth stress`` through the real CLI entry point (tiny models)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from marketsynth.cli.app import main
from tests.cli_helpers import assert_one_line_error, run

TINY_CGAN = ["--seq-len", "8", "--epochs", "1", "--batch-size", "32", "--latent-dim", "4", "-O", "hidden_size=8",
             "-O", "num_layers=1", "-O", "critic_hidden_size=8", "-O", "n_critic=1"]


@pytest.fixture(scope="module")
def small_csv(btc_csv, tmp_path_factory):
    """About 50 days of hourly candles in the Binance export format."""
    path = tmp_path_factory.mktemp("data") / "BTCUSDT_small.csv"
    pd.read_csv(btc_csv, skiprows=range(1, 29000), nrows=1200).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def garch_dir(small_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "garch"
    assert main(["train", "--model", "garch", "--csv", str(small_csv), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def cgan_dir(small_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "cgan"
    assert main(["train", "--model", "cgan", "--csv", str(small_csv), *TINY_CGAN, "--out", str(out)]) == 0
    return out


def test_augment_end_to_end(small_csv, tmp_path, capsys):
    code, out, err = run(capsys, "augment", "--csv", small_csv, "--strategy", "gbm", "-p", "max_iter=10",
                         "--generator", "garch", "--seeds", 2, "--folds", 2, "--ratio", 1, "--path-length", 200,
                         "--no-quality", "--out", tmp_path / "aug")
    assert code == 0, err
    for block in ("== real only ==", "== real + garch ×1 ==", "== real + null ×1 (block bootstrap) =="):
        assert block in out
    report = json.loads((tmp_path / "aug" / "augment.json").read_text())
    assert {u["seed"] for u in report["units"]} == {0, 1} and len(report["units"]) == 12
    assert (tmp_path / "aug" / "augment.html").is_file() and (tmp_path / "aug" / "run.json").is_file()


def test_stress_end_to_end(garch_dir, tmp_path, capsys):
    code, out, err = run(capsys, "stress", "--strategy", "sma-crossover", "-p", "fast=5", "-p", "slow=20",
                         "--generator", garch_dir, "--temperature", 2, "--num", 30, "--horizon", 24,
                         "--out", tmp_path / "s")
    assert code == 0, err
    assert "survival rate" in out and "average recovery time (bars)" in out
    saved = json.loads((tmp_path / "s" / "stress.json").read_text())
    assert saved["summary"]["paths"] == 30 and len(saved["per_path"]["returns"]) == 30
    assert "fan.png" in (tmp_path / "s" / "stress.html").read_text() or (tmp_path / "s" / "stress_files").is_dir()


def test_a_generator_checkpoint_that_is_not_a_generator(tmp_path, capsys):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "params.json").write_text("{}")
    code, _, err = run(capsys, "stress", "--strategy", "sma-crossover", "--generator", folder, "--out", tmp_path / "s")
    assert_one_line_error(code, err, "is not a marketsynth checkpoint")


def test_a_regime_the_model_does_not_know(garch_dir, cgan_dir, tmp_path, capsys):
    code, _, err = run(capsys, "stress", "--strategy", "sma-crossover", "--generator", cgan_dir, "--regime", "moon",
                       "--out", tmp_path / "s")
    assert_one_line_error(code, err, "unknown regime 'moon' for this cgan")
    code, _, err = run(capsys, "stress", "--strategy", "sma-crossover", "--generator", garch_dir, "--regime", "crash",
                       "--out", tmp_path / "s2")
    assert_one_line_error(code, err, "garch is not conditional")


def test_ratio_must_be_positive(small_csv, tmp_path, capsys):
    code, _, err = run(capsys, "augment", "--csv", small_csv, "--strategy", "gbm", "--generator", "garch",
                       "--ratio", 0, "--out", tmp_path / "a")
    assert_one_line_error(code, err, "--ratio must be positive")


def test_folds_too_short_for_the_warm_up(small_csv, tmp_path, capsys):
    code, _, err = run(capsys, "augment", "--csv", small_csv, "--strategy", "gbm", "--generator", "garch",
                       "--folds", 30, "--out", tmp_path / "a")
    assert_one_line_error(code, err, "folds too short for gbm's warm-up")
