"""trading.experiments: the augmentation experiment end to end on a small real slice (tiny models), and the stress
test's figures on hand-made equity paths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from marketsynth.data.load import FileSource, load
from marketsynth.errors import ConfigError, DataError, ModelError
from marketsynth.trading.experiments import AugmentSettings, path_stats, run_augment, run_stress, stress_paths
from marketsynth.trading.experiments.augment import NULL, REAL
from marketsynth.trading.experiments.report import augment_text, verdict, write_augment
from marketsynth.trading.experiments.stats import mean_ci, paired
from marketsynth.trading.experiments.synthetic import null_paths
from marketsynth.trading.strategies import create_strategy

GBM = {"max_iter": 20, "min_samples_leaf": 20}


@pytest.fixture(scope="module")
def small(btc_csv):
    return load(FileSource(str(btc_csv), None, "2023-01-01", "2023-02-20"))


@pytest.fixture(scope="module")
def experiment(small):
    settings = AugmentSettings(strategy="gbm", generators=["garch"], params=GBM, ratio=1.0, seeds=2, folds=2,
                               embargo=12, path_length=200)
    return run_augment(small, settings)


# ---- hand-made equity paths ------------------------------------------------------------------------------------
def test_survival_and_recovery_on_hand_made_paths():
    equity = np.array([
        [100, 110, 90, 95, 111, 105],   # peak 110 (bar 1), trough 90 (bar 2), back at 111 on bar 4: 2 bars
        [100, 80, 40, 45, 60, 70],      # falls to 40 < 0.5 × 100: ruined; never back to 100
        [100, 101, 102, 103, 104, 105],  # never falls: nothing to recover from
        [100, 90, 100, 50, 60, 99],     # deepest fall 100 -> 50 (bar 3), never back; exactly at the ruin level
    ], dtype=float)
    s = path_stats(equity, ruin=0.5)
    np.testing.assert_allclose(s["returns"], [0.05, -0.30, 0.05, -0.01])
    assert s["survived"].tolist() == [True, False, True, True]  # the 4th touches exactly 0.5 × capital
    np.testing.assert_allclose(s["max_drawdown"], [20 / 110, 0.6, 0.0, 0.5])
    assert s["had_drawdown"].tolist() == [True, True, False, True]
    assert s["recovered"].tolist() == [True, False, False, False]
    assert s["recovery_bars"][0] == 2 and np.isnan(s["recovery_bars"][1:]).all()


def test_recovery_counts_the_first_bar_back_at_the_peak():
    s = path_stats(np.array([[100.0, 100.0, 95.0, 97.0, 100.0]]), ruin=0.9)
    assert s["recovered"][0] and s["recovery_bars"][0] == 2 and s["survived"][0]
    assert not path_stats(np.array([[100.0, 100.0, 89.0, 100.0]]), ruin=0.9)["survived"][0]


# ---- statistics --------------------------------------------------------------------------------------------------
def test_bootstrap_intervals_are_seeded_and_pairing_skips_undefined_units():
    a = mean_ci([0.1, 0.2, None, 0.4], seed=3)
    assert a == mean_ci([0.1, 0.2, None, 0.4], seed=3)
    assert a["n"] == 3 and a["undefined"] == 1 and a["low"] <= a["mean"] <= a["high"]
    d = paired([1.0, 2.0, None, 5.0], [0.5, 2.5, 1.0, 4.0])
    assert d["n"] == 3 and d["wins"] == pytest.approx(2 / 3) and d["losses"] == pytest.approx(1 / 3)
    assert verdict({"mean": -1, "low": -2, "high": -0.5}, "max_drawdown") == "gain"
    assert verdict({"mean": -1, "low": -2, "high": -0.5}, "sharpe") == "harm"
    assert verdict({"mean": 0.1, "low": -2, "high": 0.5}, "sharpe") == "no clear effect"


# ---- the experiment --------------------------------------------------------------------------------------------
def test_folds_never_overlap_their_test_periods(experiment):
    folds = experiment.folds
    for earlier, later in zip(folds, folds[1:], strict=False):
        assert earlier["test_stop"] <= later["test_start"]
    for fold in folds:
        assert fold["train_stop"] <= fold["test_start"] - 1 - 12  # purge (horizon 1) + embargo 12
        assert pd.Timestamp(fold["train_last"]) < pd.Timestamp(fold["test_first"])


def test_generators_never_see_the_test_period(experiment):
    runs = experiment.generator_runs
    assert len(runs) == 2 * 2  # one generator per fold and seed
    for run in runs:
        fold = experiment.folds[run["fold"]]
        assert pd.Timestamp(run["train_end"]) == pd.Timestamp(fold["train_last"])
        assert pd.Timestamp(run["train_end"]) < pd.Timestamp(run["test_start"]) == pd.Timestamp(fold["test_first"])
        assert run["train_bars"] == fold["train_stop"] - fold["train_start"]


def test_arms_share_test_bars_and_costs_and_every_seed_is_reported(experiment):
    units = pd.DataFrame(experiment.units)
    assert len(units) == 2 * 2 * 3
    assert sorted(units["seed"].unique()) == [0, 1] and set(units["arm"]) == {REAL, "aug:garch", NULL}
    for (_, _), group in units.groupby(["fold", "seed"]):
        assert group["test_start"].nunique() == 1 and group["test_end"].nunique() == 1
        assert group["test_bars"].nunique() == 1
        assert len({str(c) for c in group["costs"]}) == 1
    real = units[units["arm"] == REAL]
    augmented = units[units["arm"] != REAL]
    assert (real["paths"] == 0).all() and (augmented["paths"] > 0).all()
    assert units.loc[units["arm"] == "aug:garch", "paths"].tolist() == units.loc[units["arm"] == NULL, "paths"].tolist()
    text = augment_text(experiment)
    for seed in (0, 1):
        for arm in (REAL, "aug:garch", NULL):
            assert f"{arm}|seed={seed}" in text
    assert "== real only ==" in text and "paired difference: garch − null" in text
    assert len(experiment.sharpe) == 6 and all(row["trials"] == 6 for row in experiment.sharpe.values())
    assert {q["arm"] for q in experiment.quality} == {"aug:garch", NULL}


def test_the_report_files(experiment, tmp_path):
    written = write_augment(tmp_path, experiment)
    assert set(written) == {"augment.json", "augment.txt", "augment.html"}
    assert "NaN" not in (tmp_path / "augment.json").read_text()
    assert "Paired differences" in (tmp_path / "augment.html").read_text()


def test_bad_settings_are_one_line_errors(small):
    with pytest.raises(ConfigError, match="--ratio must be positive"):
        run_augment(small, AugmentSettings(strategy="gbm", generators=["garch"], ratio=0))
    with pytest.raises(ConfigError, match="must learn"):
        run_augment(small, AugmentSettings(strategy="sma-crossover", generators=["garch"]))
    with pytest.raises(DataError, match="folds too short for gbm's warm-up"):
        run_augment(small, AugmentSettings(strategy="gbm", generators=["garch"], folds=40))


def test_null_paths_are_real_blocks_from_the_last_close(small):
    bars = small.bars.iloc[:300].reset_index(drop=True)
    step = pd.Timedelta(hours=1)
    paths = null_paths(bars, 3, 50, seed=1, start_time=bars["time"].iat[-1] + step, step=step, block=10)
    assert len(paths) == 3 and all(len(p) == 50 for p in paths)
    assert paths[0]["time"].iat[0] == bars["time"].iat[-1] + step
    real_returns = set(np.round(np.log(bars["close"] / bars["close"].shift()).dropna(), 10))
    first = paths[0]
    assert np.log(first["close"].iat[0] / bars["close"].iat[-1]).round(10) in real_returns
    assert np.isin(np.round(np.log(first["close"] / first["close"].shift()).dropna(), 10), list(real_returns)).all()


# ---- stress ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def garch(small, tmp_path_factory):
    from marketsynth import api

    out = tmp_path_factory.mktemp("garch") / "ckpt"
    api.train("garch", small.bars, out=out)
    return api.load(out)


def test_stress_paths_start_from_real_history_and_only_synthetic_bars_count(garch, small):
    strategy = create_strategy("sma-crossover", {"fast": 3, "slow": 10})
    paths = stress_paths(garch, small.bars, num=20, horizon=30, warm=25, seed=0)
    frame = paths.frames[0]
    assert len(frame) == 55
    pd.testing.assert_frame_equal(frame.iloc[:25].reset_index(drop=True)[["open", "close"]],
                                  small.bars.iloc[-25:].reset_index(drop=True)[["open", "close"]])
    assert frame["time"].iat[25] - frame["time"].iat[24] == pd.Timedelta(hours=1)
    result = run_stress(strategy, paths, ruin=0.5)
    assert result.equity.shape == (20, 31) and (result.equity[:, 0] == 10_000).all()
    summary = result.summary()
    assert summary["paths"] == 20 and 0 <= summary["survival_rate"] <= 1
    again = run_stress(strategy, stress_paths(garch, small.bars, num=20, horizon=30, warm=25, seed=0))
    np.testing.assert_array_equal(again.equity, result.equity)


def test_stress_refuses_a_regime_the_model_does_not_know(garch, small):
    with pytest.raises(ModelError, match="not conditional"):
        stress_paths(garch, small.bars, num=5, horizon=10, warm=20, regime="crash")
