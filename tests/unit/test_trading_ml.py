"""Learned strategies (gbm, ensemble): they find a planted pattern out of sample and nothing in noise, are seeded,
causal, save/load bit-identically without pickle, take extra training frames, and refuse bad parameters in one line.

Planted pattern: the sign of each close-to-close return repeats the previous one's (bars open at the previous
close, so that is the previous bar's body colour) with probability 0.7, sizes are independent. A perfect model
calls 70 % of next-bar directions right; chance is 50 %.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.ensemble import HistGradientBoostingClassifier

from marketsynth.errors import ConfigError, DataError, MarketSynthError, ModelError
from marketsynth.trading.ml import EnsembleStrategy, GbmStrategy
from marketsynth.trading.ml.samples import FIRST_ROW, bar_step, forward_returns, window_ends
from marketsynth.trading.ml.trees import TreeEnsemble
from marketsynth.trading.strategies import create_strategy, strategy_names
from marketsynth.trading.strategy import assert_causal, assert_event_matches_signals

N_BARS, N_TRAIN = 1800, 1200
TINY = {"seq_len": 8, "lstm_hidden": 8, "cnn_channels": 4, "dnn_hidden": 16, "micro_bars": 3, "epochs": 12,
        "patience": 4}  # a small ensemble: a fit takes a couple of seconds on one thread


def bars_from_returns(r: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    close = 100 * np.exp(np.cumsum(r))
    opens = np.concatenate([[100.0], close[:-1]])
    n = len(r)
    return pd.DataFrame({
        "time": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"), "open": opens,
        "high": np.maximum(opens, close) * np.exp(rng.exponential(0.002, n)),
        "low": np.minimum(opens, close) * np.exp(-rng.exponential(0.002, n)),
        "close": close, "volume": rng.exponential(5.0, n),
    })


def planted_bars(n: int = N_BARS, seed: int = 1, follow: float = 0.7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    size = np.abs(rng.normal(0, 0.01, n)) + 1e-4
    same = rng.random(n) < follow
    r = np.empty(n)
    r[0] = size[0]
    for t in range(1, n):
        r[t] = size[t] * (np.sign(r[t - 1]) if same[t] else -np.sign(r[t - 1]))
    return bars_from_returns(r, rng)


def noise_bars(n: int = N_BARS, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return bars_from_returns(rng.normal(0, 0.01, n), rng)


def make(kind: str, **params):
    return GbmStrategy(**params) if kind == "gbm" else EnsembleStrategy(**{**TINY, **params})


@pytest.fixture(scope="module")
def planted() -> pd.DataFrame:
    return planted_bars()


@pytest.fixture(scope="module")
def noise() -> pd.DataFrame:
    return noise_bars()


@pytest.fixture(scope="module")
def fitted(planted, noise) -> dict:
    """``{(kind, data): strategy fitted on the first N_TRAIN bars}``, shared by the tests below."""
    out = {}
    for kind in ("gbm", "ensemble"):
        for name, bars in (("planted", planted), ("noise", noise)):
            strategy = make(kind, allow_short=True)
            strategy.fit(bars.iloc[:N_TRAIN])
            out[kind, name] = strategy
    return out


def chance_bound(n: int) -> float:
    """Above this a score on ``n`` fair coin flips is 3 standard deviations past 0.5 (a 0.13 % chance)."""
    return 0.5 + 3 * 0.5 / math.sqrt(n)


def raw_accuracy(strategy, bars: pd.DataFrame) -> tuple[float, int]:
    """How often ``p > 0.5`` calls the next bar's direction right over the out-of-sample bars (every bar, not only
    where the strategy trades)."""
    p = strategy.probabilities(bars)[N_TRAIN:]
    r = forward_returns(bars, 1, pd.Timedelta(hours=1))[N_TRAIN:]
    known = np.isfinite(p) & np.isfinite(r) & (r != 0)
    return float(np.mean((p[known] > 0.5) == (r[known] > 0))), int(known.sum())


# ---------------------------------------------------------------------------------------------- learning


@pytest.mark.parametrize("kind", ["gbm", "ensemble"])
def test_a_planted_pattern_is_learnt_out_of_sample(kind, fitted, planted):
    strategy = fitted[kind, "planted"]
    correct, calls = strategy.direction_calls(planted, start=N_TRAIN)
    assert calls >= 150  # it trades a good part of the 600 test bars
    assert correct / calls == strategy.direction_accuracy(planted, start=N_TRAIN)
    # 0.7 is the best possible; 0.6 is more than 4 standard deviations above chance on 150+ calls
    assert correct / calls > 0.6
    accuracy, n = raw_accuracy(strategy, planted)
    assert accuracy > chance_bound(n)


@pytest.mark.parametrize("kind", ["gbm", "ensemble"])
def test_noise_teaches_nothing(kind, fitted, noise):
    strategy = fitted[kind, "noise"]
    accuracy, n = raw_accuracy(strategy, noise)
    # on noise the expected score is 0.5 with a standard deviation of 0.5 / sqrt(n) (about 0.02 on ~600 bars);
    # 3 of them either way is the tolerance
    assert abs(accuracy - 0.5) <= 3 * 0.5 / math.sqrt(n)
    correct, calls = strategy.direction_calls(noise, start=N_TRAIN)
    assert calls == 0 or correct / calls <= chance_bound(calls)
    # and it mostly stays out: fewer calls than on the planted series
    assert calls < fitted[kind, "planted"].direction_calls(planted_bars(), start=N_TRAIN)[1]


def test_the_ensemble_learns_voting_weights_on_the_held_out_fold(fitted):
    summary = fitted["ensemble", "planted"].training_summary
    weights = fitted["ensemble", "planted"].voting_weights
    assert set(weights) == {"lstm", "cnn", "dnn"} and math.isclose(sum(weights.values()), 1.0)
    assert summary["voting_windows"] >= 60 and summary["training_windows"] > summary["voting_windows"]
    assert summary["voting_accuracy"]["ensemble"] > 0.6
    for head in ("lstm", "cnn", "dnn"):
        assert 1 <= summary[head]["best_epoch"] <= summary[head]["epochs_run"] <= TINY["epochs"]


# ---------------------------------------------------------------------------------------------- determinism, causality


@pytest.mark.parametrize("kind", ["gbm", "ensemble"])
def test_same_seed_same_predictions(kind, fitted, planted):
    again = make(kind, allow_short=True)
    again.fit(planted.iloc[:N_TRAIN])
    first = fitted[kind, "planted"].probabilities(planted)
    np.testing.assert_array_equal(again.probabilities(planted), first)
    if kind == "ensemble":  # a different seed starts the networks elsewhere
        other = make(kind, allow_short=True, seed=7)
        other.fit(planted.iloc[:N_TRAIN])
        assert not np.array_equal(other.probabilities(planted), first, equal_nan=True)


@pytest.mark.parametrize("kind", ["gbm", "ensemble"])
def test_signals_are_causal_and_match_the_event_path(kind, fitted, planted):
    strategy = fitted[kind, "planted"]
    bars = planted.iloc[N_TRAIN - 300:N_TRAIN + 300].reset_index(drop=True)
    assert_causal(strategy, bars, cuts=[strategy.warmup - 1, strategy.warmup, strategy.warmup + 1, 200, 257, 599])
    assert_event_matches_signals(lambda: strategy, bars.iloc[:strategy.warmup + 40].reset_index(drop=True))
    table = strategy.signals(bars)
    assert (table["target"].iloc[: strategy.warmup - 1] == 0).all()
    assert table["confidence"].iloc[: strategy.warmup - 1].isna().all()
    assert table["target"].between(-1, 1).all() and (table["target"] != 0).any()


def test_targets_follow_threshold_and_confidence_sizing():
    p = np.array([np.nan, 0.5, 0.56, 0.6, 0.7, 0.9, 0.44, 0.2])
    target, confidence = GbmStrategy(threshold=0.55, full_size_at=0.7).targets(p)
    np.testing.assert_allclose(target, [0, 0, 0.3, 0.5, 1, 1, 0, 0])  # long only by default
    np.testing.assert_allclose(confidence, [np.nan, 0.5, 0.56, 0.6, 0.7, 0.9, 0.56, 0.8])
    target, _ = GbmStrategy(threshold=0.55, allow_short=True, confidence_sizing=False).targets(p)
    np.testing.assert_allclose(target, [0, 0, 1, 1, 1, 1, -1, -1])


# ---------------------------------------------------------------------------------------------- persistence


@pytest.mark.parametrize("kind", ["gbm", "ensemble"])
def test_save_load_gives_identical_signals_without_pickle(kind, fitted, planted, tmp_path):
    strategy = fitted[kind, "planted"]
    folder = strategy.save(tmp_path / kind)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "meta.json", "state.json",
                                                         "weights.safetensors"]
    loaded = type(strategy).load(folder)
    pd.testing.assert_frame_equal(loaded.signals(planted), strategy.signals(planted))
    assert loaded.params() == strategy.params()
    strategy.save(folder)  # saving again replaces the folder
    assert type(strategy).load(folder, threshold=0.6).threshold == 0.6


def test_loading_the_wrong_folder_is_one_line(fitted, tmp_path):
    folder = fitted["gbm", "planted"].save(tmp_path / "gbm")
    with pytest.raises(ModelError, match="holds a saved 'gbm' strategy, not ensemble"):
        EnsembleStrategy.load(folder)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    for path in (tmp_path / "missing", tmp_path / "other"):
        with pytest.raises(ModelError, match="is not a saved strategy") as info:
            GbmStrategy.load(path)
        assert "\n" not in str(info.value)
    with pytest.raises(ModelError, match="not a saved strategy; choose another path"):
        fitted["gbm", "planted"].save(tmp_path / "other")
    (folder / "weights.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="corrupt"):
        GbmStrategy.load(folder)


def test_exported_trees_predict_exactly_like_scikit_learn():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 6))
    y = (x[:, 0] + x[:, 1] * x[:, 2] + rng.normal(size=3000) > 0).astype(int)
    x[rng.random(x.shape) < 0.02] = np.nan  # missing values take the learnt side
    model = HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=15, early_stopping=False,
                                           random_state=0).fit(x, y)
    trees = TreeEnsemble.from_sklearn(model, 6)
    np.testing.assert_allclose(trees.probability(x), model.predict_proba(x)[:, 1], rtol=0, atol=1e-12)
    again = TreeEnsemble.from_arrays(trees.to_arrays(), 6, trees.depth)
    np.testing.assert_array_equal(again.probability(x), trees.probability(x))
    broken = trees.to_arrays()
    broken["trees.left"] = np.where(trees.leaf, 0, len(trees.feature) + 5)  # children outside the node table
    with pytest.raises(ModelError, match="malformed"):
        TreeEnsemble.from_arrays(broken, 6, trees.depth)


# ---------------------------------------------------------------------------------------------- data handling


@pytest.mark.parametrize("kind", ["gbm", "ensemble"])
def test_extra_frames_add_training_samples_only(kind, planted):
    base = make(kind)
    base.fit(planted.iloc[:N_TRAIN])
    more = make(kind)
    more.fit(planted.iloc[:N_TRAIN], extra=[planted_bars(400, seed=5), planted_bars(400, seed=6)])
    if kind == "gbm":
        assert more.training_summary["extra_samples"] > 700
        assert more.training_summary["val_samples"] == base.training_summary["val_samples"]
    else:
        assert more.training_summary["extra_windows"] > 700
        for part in ("training_windows", "early_stopping_windows", "voting_windows"):
            assert more.training_summary[part] == base.training_summary[part]
    with pytest.raises(ConfigError, match="extra must be a list of bars frames"):
        more.fit(planted.iloc[:N_TRAIN], extra=planted)
    with pytest.raises(DataError, match=r"extra\[0\] lack column\(s\) volume"):
        more.fit(planted.iloc[:N_TRAIN], extra=[planted.drop(columns="volume")])
    daily = planted_bars(100).assign(time=pd.date_range("2024-01-01", periods=100, freq="D", tz="UTC"))
    with pytest.raises(DataError, match=r"extra\[1\] has bars of 1 days 00:00:00 but the training bars are 0 days "
                                        r"01:00:00 apart"):
        more.fit(planted.iloc[:N_TRAIN], extra=[planted_bars(100), daily])


def test_labels_and_windows_never_cross_a_time_gap():
    bars = planted_bars(80)
    bars.loc[50:, "time"] += pd.Timedelta(hours=5)  # a gap between bars 49 and 50
    step = bar_step(bars)
    r = forward_returns(bars, 2, step)
    assert np.isnan(r[[48, 49, 78, 79]]).all() and np.isfinite(r[[47, 50, 77]]).all()
    ends = window_ends(bars, 8, step)
    assert ends[0] == FIRST_ROW + 7
    # a window and the bar before it stay in one gap-free run (the window cutter's rule): bars 50-57 end none
    assert not np.isin(np.arange(50, 58), ends).any()
    assert 49 in ends and 58 in ends


@pytest.mark.parametrize("kind", ["gbm", "ensemble"])
def test_short_or_unfitted_use_is_a_clear_error(kind, planted):
    strategy = make(kind)
    with pytest.raises(ModelError, match=f"strategy {kind} is not fitted; call fit"):
        strategy.signals(planted)
    with pytest.raises(DataError, match="needs at least") as info:
        strategy.fit(planted.iloc[:150])
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------- parameters


def test_both_are_registered_learning_strategies():
    assert {"gbm", "ensemble"} <= set(strategy_names())
    assert create_strategy("gbm", {"threshold": "0.6"}).threshold == 0.6
    assert create_strategy("ensemble").learns and create_strategy("gbm").learns
    assert create_strategy("ensemble", {"seq_len": "16"}).warmup == FIRST_ROW + 16
    assert create_strategy("gbm").warmup == FIRST_ROW + 1


@pytest.mark.parametrize(("name", "params", "message"), [
    ("ensemble", {"seq_lenn": 4}, r"unknown parameter 'seq_lenn' for ensemble \(did you mean seq_len\?\)"),
    ("gbm", {"treshold": 0.6}, r"unknown parameter 'treshold' for gbm \(did you mean threshold\?\)"),
    ("gbm", {"threshold": 0.4}, r"threshold must be in \[0.5, 1\)"),
    ("gbm", {"max_iter": "many"}, "parameter max_iter of gbm must be an integer"),
    ("ensemble", {"micro_bars": 30, "seq_len": 8}, r"micro_bars \(30\) must not exceed seq_len \(8\)"),
    ("ensemble", {"vote_fraction": 0.7}, "vote_fraction must be between 0 and 0.5"),
    ("ensemble", {"device": "tpu"}, "unknown device 'tpu'; use cpu, cuda, cuda:N or auto"),
    ("ensemble", {"lstm_layers": 0}, "lstm_layers=0; each must be at least 1"),
])
def test_bad_parameters_are_one_line_errors(name, params, message):
    with pytest.raises(MarketSynthError, match=message) as info:
        create_strategy(name, params)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_ensemble_trains_and_predicts_on_cuda(planted):
    strategy = make("ensemble", device="cuda", allow_short=True)
    strategy.fit(planted.iloc[:N_TRAIN])
    assert strategy.direction_accuracy(planted, start=N_TRAIN) > 0.6
