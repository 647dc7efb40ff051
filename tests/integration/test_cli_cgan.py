"""``marketsynth train --model cgan`` and ``generate --regime`` through the real CLI entry point (tiny models)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from marketsynth.cli.app import main
from tests.cli_helpers import assert_one_line_error, run

TINY = ["--seq-len", "8", "--epochs", "1", "--batch-size", "32", "--latent-dim", "4", "-O", "hidden_size=8",
        "-O", "num_layers=1", "-O", "critic_hidden_size=8", "-O", "n_critic=1"]


@pytest.fixture(scope="module")
def small_csv(btc_csv, tmp_path_factory):
    """300 hourly candles in the Binance export format, with a per-bar label column ``regime``."""
    path = tmp_path_factory.mktemp("data") / "BTCUSDT_small.csv"
    frame = pd.read_csv(btc_csv, skiprows=range(1, 5000), nrows=300)
    frame["regime"] = np.where(frame["close"].diff(6).fillna(0) >= 0, "risk-on", "risk-off")
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def cgan_run(small_csv, tmp_path_factory):
    """(checkpoint dir, train stdout) of a tiny cgan with automatic labels and a q_crash of 20%."""
    out = tmp_path_factory.mktemp("runs") / "cgan"
    capsys_free = main(["train", "--model", "cgan", "--csv", str(small_csv), *TINY, "-O", "q_crash=0.2",
                        "--out", str(out)])
    assert capsys_free == 0
    return out


def test_train_labels_windows_and_prints_the_counts(small_csv, tmp_path, capsys):
    code, out, err = run(capsys, "train", "--model", "cgan", "--csv", small_csv, *TINY, "--out", tmp_path / "run")
    assert code == 0, err
    assert "trained cgan: 1 epoch(s) on 292 windows" in out
    assert "regimes: crash: max drawdown >=" in out and "(worst 10%)" in out
    counts = next(line for line in out.splitlines() if line.startswith("training windows per regime:"))
    numbers = [int(part.split()[-1]) for part in counts.split(":", 1)[1].split(",")]
    assert sum(numbers) == 292 and all(n > 0 for n in numbers)
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert sum(meta["regimes"].values()) == 292


def test_thresholds_are_options_and_saved_with_the_model(cgan_run):
    state = json.loads((cgan_run / "model_state.json").read_text())
    definition = state["definition"]
    assert definition["q_crash"] == 0.2 and definition["method"] == "quantiles"
    assert definition["crash_drawdown"] > 0 and definition["bear_return"] < 0 < definition["bull_return"]
    assert state["label_counts"][2] == pytest.approx(0.2 * 292, abs=3)  # crash: the worst 20% of drawdowns
    assert set(state["real_stats"]) == {"bull", "bear", "crash", "sideways"}


def test_generate_a_regime_prints_generated_next_to_real_statistics(cgan_run, tmp_path, capsys):
    output = tmp_path / "crash.csv"
    code, out, err = run(capsys, "generate", "--model", cgan_run, "--regime", "crash", "--num-samples", 12,
                         "--output", output, "--seed", 3)
    assert code == 0, err
    frame = pd.read_csv(output)
    assert list(frame.columns)[-1] == "regime" and set(frame["regime"]) == {"crash"}
    assert frame["sample_id"].nunique() == 12
    real = json.loads((cgan_run / "model_state.json").read_text())["real_stats"]["crash"]
    row = next(line for line in out.splitlines() if "crash" in line and "│" in line)
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells[0] == "crash" and cells[1] == "12"
    assert cells[3] == f"{real['max_drawdown']:.2%}" and cells[5] == f"{real['crash_duration']:.1f}"
    assert cells[6] == str(real["windows"])
    assert "max drawdown" in out and "crash bars" in out
    code, again, _ = run(capsys, "generate", "--model", cgan_run, "--regime", "crash", "--num-samples", 12,
                         "--output", tmp_path / "again.csv", "--seed", 3)
    assert (tmp_path / "again.csv").read_bytes() == output.read_bytes()


def test_generate_without_regime_follows_the_training_mix(cgan_run, tmp_path, capsys):
    code, out, err = run(capsys, "generate", "--model", cgan_run, "--num-samples", 40, "--output",
                         tmp_path / "mix.csv")
    assert code == 0, err
    regimes = pd.read_csv(tmp_path / "mix.csv").groupby("sample_id")["regime"].first()
    assert regimes.nunique() >= 3
    for name in regimes.unique():
        assert any(line.strip("│ ").startswith(name) for line in out.splitlines()), out


def test_unknown_regime_lists_the_models_regimes(cgan_run, tmp_path, capsys):
    code, _, err = run(capsys, "generate", "--model", cgan_run, "--regime", "moon", "--output", tmp_path / "x.csv")
    assert_one_line_error(code, err, "unknown regime 'moon' for this cgan; choose one of bull, bear, crash, sideways")
    assert not (tmp_path / "x.csv").exists()


def test_regime_and_label_column_need_a_conditional_model(small_csv, tmp_path, capsys):
    wgan = tmp_path / "wgan"
    code, _, err = run(capsys, "train", "--model", "wgan-gp", "--csv", small_csv, *TINY, "--out", wgan)
    assert code == 0, err
    code, _, err = run(capsys, "generate", "--model", wgan, "--regime", "crash", "--output", tmp_path / "x.csv")
    assert_one_line_error(code, err, "wgan-gp is not conditional, so --regime crash does not apply")
    code, _, err = run(capsys, "train", "--model", "wgan-gp", "--csv", small_csv, *TINY, "--label-column", "regime",
                       "--out", tmp_path / "other")
    assert_one_line_error(code, err, "--label-column only applies to conditional models (cgan)")


def test_label_column_from_the_csv(small_csv, tmp_path, capsys):
    code, out, err = run(capsys, "train", "--model", "cgan", "--csv", small_csv, *TINY, "--label-column", "regime",
                         "--out", tmp_path / "run")
    assert code == 0, err
    assert "regimes: labels from column 'regime'" in out and "risk-off" in out and "risk-on" in out
    code, out, err = run(capsys, "generate", "--model", tmp_path / "run", "--regime", "risk-off", "--num-samples", 5,
                         "--output", tmp_path / "off.csv")
    assert code == 0, err
    assert set(pd.read_csv(tmp_path / "off.csv")["regime"]) == {"risk-off"}
    code, _, err = run(capsys, "train", "--model", "cgan", "--csv", small_csv, *TINY, "--label-column", "mood",
                       "--out", tmp_path / "bad")
    assert_one_line_error(code, err, "--label-column mood")
