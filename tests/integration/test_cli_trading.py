"""``marketsynth backtest`` and ``marketsynth signal`` through the real entry point."""

import json

import numpy as np
import pandas as pd
import pytest

from marketsynth.data.io import read_bars_file
from marketsynth.testing.fake_exchange import FakeExchange
from tests.cli_helpers import assert_one_line_error, run

SMA = ["--strategy", "sma-crossover", "--param", "fast=10", "--param", "slow=40"]


@pytest.fixture(scope="module")
def small_csv(btc_csv, tmp_path_factory):
    path = tmp_path_factory.mktemp("bt") / "btc.csv"
    read_bars_file(btc_csv).iloc[100:1600].to_csv(path, index=False)
    return path


def test_backtest_writes_trades_equity_stats_and_tearsheet(small_csv, tmp_path, capsys):
    out = tmp_path / "bt"
    code, stdout, err = run(capsys, "backtest", *SMA, "--csv", small_csv, "--slippage-bps", "2", "--out", out)
    assert code == 0, err
    stats = json.loads((out / "stats.json").read_text())
    for key in ("total_return", "cagr", "sharpe", "sortino", "calmar", "max_drawdown", "win_rate", "profit_factor",
                "n_trades"):
        assert key in stats, key
    assert stats["settings"]["costs"]["taker_fee"] == 0.0005 and stats["settings"]["costs"]["slippage_bps"] == 2
    trades = pd.read_csv(out / "trades.csv")
    assert len(trades) == stats["n_trades"] > 0
    assert {"entry_time", "exit_time", "side", "quantity", "fees", "funding", "pnl", "return"} <= set(trades.columns)
    equity = pd.read_csv(out / "equity.csv")
    assert len(equity) == 1500 and equity["equity"].iloc[-1] == pytest.approx(stats["end_equity"])
    assert "<html" in (out / "tearsheet.html").read_text(encoding="utf-8")
    assert "sharpe" in stdout and "funding: none" in stdout and f"tearsheet.html: {out / 'tearsheet.html'}" in stdout
    code, _, err = run(capsys, "backtest", *SMA, "--csv", small_csv, "--out", out)
    assert "already holds a complete backtest" in assert_one_line_error(code, err)


def test_a_learning_strategy_runs_walk_forward(small_csv, tmp_path, capsys):
    out = tmp_path / "gbm"
    code, _, err = run(capsys, "backtest", "--strategy", "gbm", "--csv", small_csv, "--folds", "2", "--out", out)
    assert code == 0, err
    stats = json.loads((out / "stats.json").read_text())
    equity = pd.read_csv(out / "equity.csv")
    assert len(equity) == 2 * (1500 // 3)  # the two test folds only, chained
    assert stats["start"] > "2019-09-13"  # trading starts after the first training fold


def test_backtest_over_synthetic_paths_reports_each_metric_across_paths(small_csv, tmp_path, capsys):
    bars = read_bars_file(small_csv)
    frames = [pd.DataFrame({"sample_id": k, "timestep": np.arange(200),
                            **{c: bars[c].to_numpy()[k * 200:(k + 1) * 200] for c in
                               ("open", "high", "low", "close", "volume")}}) for k in range(4)]
    synthetic = tmp_path / "synthetic.csv"
    pd.concat(frames).to_csv(synthetic, index=False)
    out = tmp_path / "paths"
    code, stdout, err = run(capsys, "backtest", *SMA, "--synthetic", synthetic, "--funding", "0.0001", "--out", out)
    assert code == 0, err
    per_path = pd.read_csv(out / "paths.csv")
    assert list(per_path["sample_id"]) == [0, 1, 2, 3]
    distribution = json.loads((out / "stats.json").read_text())["distribution"]
    assert distribution["total_return"]["paths"] == 4
    assert distribution["total_return"]["mean"] == pytest.approx(per_path["total_return"].mean())
    assert "backtest over 4 synthetic paths" in stdout


def test_funding_auto_reads_the_stored_series(btc_csv, tmp_path, capsys):
    bars = read_bars_file(btc_csv).iloc[3000:3000 + 24 * 20].reset_index(drop=True)
    shift = pd.Timestamp.now(tz="UTC").floor("1D") - pd.Timedelta(days=1) - bars.time.iloc[-1].floor("1D")
    bars = bars.assign(time=bars.time + shift)
    store = tmp_path / "store.duckdb"
    with FakeExchange({"BTCUSDT": bars}) as fake:
        fake.now = pd.Timestamp.now(tz="UTC")
        first, last = bars.time.iloc[0], bars.time.iloc[-1]
        code, _, err = run(capsys, "fetch", "--exchange", "binance", "--symbol", "BTCUSDT", "--interval", "1h",
                           "--funding", "--store", store, "--base-url", fake.base_url, "--start", first.isoformat(),
                           "--end", last.isoformat())
        assert code == 0, err
    out = tmp_path / "bt"
    code, stdout, err = run(capsys, "backtest", "--strategy", "buy-and-hold", "--symbol", "BTCUSDT", "--interval",
                            "1h", "--store", store, "--out", out)
    assert code == 0, err
    assert "stored rates of binance BTCUSDT" in stdout
    trades = pd.read_csv(out / "trades.csv")
    assert trades["funding"].abs().sum() > 0  # a long held through funding times paid or received funding


def test_signal_prints_the_target_and_the_bar_it_is_based_on(small_csv, capsys):
    code, stdout, err = run(capsys, "signal", *SMA, "--csv", small_csv)
    assert code == 0, err
    last = read_bars_file(small_csv)["time"].iloc[-1]
    assert "target" in stdout and f"{last:%Y-%m-%d %H:%M}" in stdout


@pytest.mark.parametrize(("args", "phrases"), [
    (["--strategy", "sma-crosover"], ["unknown strategy", "did you mean sma-crossover"]),
    (["--strategy", "sma-crossover", "--param", "fats=3"], ["unknown parameter 'fats'", "did you mean fast"]),
    (["--strategy", "sma-crossover", "--param", "fast"], ["NAME=VALUE"]),
    (["--strategy", "sma-crossover", "--capital", "-5"], ["capital must be a positive number"]),
    (["--strategy", "sma-crossover", "--fee-taker", "-0.1"], ["taker_fee must be a number of 0 or more"]),
    (["--strategy", "sma-crossover", "--funding", "lots"], ["--funding 'lots'"]),
    (["--strategy", "sma-crossover", "--param", "slow=5000"], ["too few", "needs 5001 bars"]),
])
def test_bad_input_is_one_line(small_csv, tmp_path, capsys, args, phrases):
    code, _, err = run(capsys, "backtest", *args, "--csv", small_csv, "--out", tmp_path / "x")
    assert_one_line_error(code, err, *phrases)
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_model_rules_are_one_line(small_csv, tmp_path, capsys):
    from marketsynth.trading.strategies import STRATEGIES

    needing = [name for name, cls in STRATEGIES.items() if cls.needs_model]
    for name in needing:
        code, _, err = run(capsys, "backtest", "--strategy", name, "--csv", small_csv, "--out", tmp_path / name)
        assert_one_line_error(code, err, "--model DIR")
    checkpoint = tmp_path / "ckpt"
    code, _, err = run(capsys, "train", "--model", "garch", "--csv", small_csv, "--seq-len", "8", "--out", checkpoint)
    assert code == 0, err
    code, _, err = run(capsys, "backtest", *SMA, "--csv", small_csv, "--model", checkpoint, "--out", tmp_path / "m")
    assert_one_line_error(code, err, "uses no model", "drop --model")
    for name in needing:
        code, _, err = run(capsys, "backtest", "--strategy", name, "--csv", small_csv, "--model", checkpoint,
                           "--out", tmp_path / f"{name}-garch")
        assert_one_line_error(code, err, "garch")
