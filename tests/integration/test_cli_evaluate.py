"""``marketsynth evaluate`` through the real CLI entry point, on small real and synthetic files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.cli_helpers import assert_one_line_error, run
from tests.unit.evaluation_helpers import random_walk_candles

FAST = ["--repeats", "1", "--max-windows", "80"]


def long_frame(windows: np.ndarray) -> pd.DataFrame:
    n, length, _ = windows.shape
    frame = pd.DataFrame(windows.reshape(-1, 5), columns=["open", "high", "low", "close", "volume"])
    frame.insert(0, "timestep", np.tile(np.arange(length), n))
    frame.insert(0, "sample_id", np.repeat(np.arange(n), length))
    return frame


@pytest.fixture(scope="module")
def files(btc_csv, tmp_path_factory):
    """Real: 150 hourly BTC candles (Binance export). Synthetic: 30 generated samples of 8 bars, a candle file."""
    folder = tmp_path_factory.mktemp("evaluate")
    real = folder / "real.csv"
    pd.read_csv(btc_csv, skiprows=range(1, 8000), nrows=150).to_csv(real, index=False)
    samples = folder / "samples.csv"
    long_frame(random_walk_candles(30, 8, seed=2, vol=0.006, start=9000)).to_csv(samples, index=False)
    candles = folder / "candles.csv"
    pd.read_csv(btc_csv, skiprows=range(1, 9000), nrows=60).to_csv(candles, index=False)
    return {"real": real, "samples": samples, "candles": candles, "folder": folder}


def test_evaluate_prints_the_verdicts_and_writes_report_and_json(files, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"model": "dcgan", "epoch": 2}))
    pd.DataFrame({"epoch": [1, 2], "d_loss": [0.7, 0.6], "g_loss": [0.9, 1.1]}).to_csv(run_dir / "history.csv",
                                                                                        index=False)
    report, metrics = tmp_path / "report.html", tmp_path / "metrics.json"
    code, out, err = run(capsys, "evaluate", "--real", files["real"], "--synthetic", files["samples"], *FAST,
                         "--model", run_dir, "--report", report, "--json", metrics)
    assert code == 0, err
    for text in ("evaluate", "mean return", "discriminative score", "memorization", "candle validity", "verdict",
                 "windows of 8 bars", f"report: {report}", f"metrics: {metrics}"):
        assert text in out, text
    data = json.loads(metrics.read_text())
    assert data["seq_len"] == 8 and data["n_synthetic"] == 30 and data["n_real"] == 142
    assert {r["verdict"] for r in data["records"]} <= {"good", "fair", "poor", "n/a"}
    html = report.read_text(encoding="utf-8")
    assert "data:image/png;base64" in html and "Training" in html and "samples.csv" in html
    assert (tmp_path / "report_files" / "training_curves.png").is_file()


def test_diagnose_prints_the_ranked_findings_and_keeps_them_in_the_json(files, tmp_path, capsys):
    metrics = tmp_path / "metrics.json"
    code, out, err = run(capsys, "evaluate", "--real", files["real"], "--synthetic", files["samples"], *FAST,
                         "--diagnose", "--json", metrics)
    assert code == 0, err
    assert "what gives the synthetic windows away" in out and "1. [" in out
    diagnosis = json.loads(metrics.read_text())["diagnosis"]
    assert diagnosis["findings"] and diagnosis["n_classified"] == 30
    assert diagnosis["daily"]["bars_per_day"] == 24 and diagnosis["daily"]["real"] is not None  # hourly real bars
    assert "carry no clock" in diagnosis["daily"]["note"]


def test_a_plain_candle_file_is_cut_into_windows(files, capsys):
    code, out, err = run(capsys, "evaluate", "--real", files["real"], "--synthetic", files["candles"],
                         "--seq-len", 8, *FAST)
    assert code == 0, err
    assert "52 synthetic windows of 8 bars" in out and "add --report" in out


@pytest.mark.parametrize(
    ("make", "options", "patterns"),
    [
        (None, ["--seq-len", "12"], ["--seq-len is 12", "have 8 bars", "--seq-len 8"]),
        (lambda f: long_frame(random_walk_candles(30, 8)).drop(columns="close"), [], ["lack column(s) close"]),
        (lambda f: long_frame(random_walk_candles(3, 8)), [], ["only 3 synthetic window(s)", "at least 10"]),
        (lambda f: long_frame(random_walk_candles(30, 8)).rename(columns={"open": "ret"}).drop(
            columns=["high", "low", "close"]), [], ["model-space features", "--normalized"]),
        (None, ["--protocol", "paper"], ["--protocol 'paper' is unknown", "default, timegan"]),
        (None, ["--report", "out.pdf"], ["--report out.pdf", ".html"]),
    ],
    ids=["seq-len-mismatch", "missing-column", "too-few-synthetic", "normalized-file", "bad-protocol",
         "report-suffix"],
)
def test_bad_input_is_one_line_and_exit_2(files, tmp_path, capsys, make, options, patterns):
    synthetic = files["samples"]
    if make is not None:
        synthetic = tmp_path / "bad.csv"
        make(files).to_csv(synthetic, index=False)
    code, _, err = run(capsys, "evaluate", "--real", files["real"], "--synthetic", synthetic, *FAST, *options)
    assert_one_line_error(code, err, *patterns)


def test_too_few_real_windows_and_missing_files_are_one_line(files, tmp_path, capsys):
    short = tmp_path / "short.csv"
    pd.read_csv(files["real"], nrows=30).to_csv(short, index=False)
    code, _, err = run(capsys, "evaluate", "--real", short, "--synthetic", files["samples"], *FAST)
    assert_one_line_error(code, err, "only 22 window(s) of 8 bars", "at least 24")
    code, _, err = run(capsys, "evaluate", "--real", files["real"], "--synthetic", tmp_path / "nope.csv")
    assert_one_line_error(code, err, "nope.csv not found")
    code, _, err = run(capsys, "evaluate", "--synthetic", files["samples"])
    assert_one_line_error(code, err, "--csv FILE, --sample NAME, or --symbol S --interval I")
