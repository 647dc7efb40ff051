"""Regime labels on hand-made windows: the rules, the thresholds, user label columns, and saving them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from marketsynth.errors import ConfigError, DataError
from marketsynth.regimes import (
    AUTO_REGIMES,
    RegimeDefinition,
    auto_labels,
    bar_labels,
    bar_paths,
    column_labels,
    max_drawdowns,
    price_paths,
    regime_stats,
)

L = 10  # bars per window
BULL, BEAR, CRASH, SIDEWAYS = (AUTO_REGIMES.index(name) for name in ("bull", "bear", "crash", "sideways"))


def steady(total: float) -> np.ndarray:
    """A path of L bars going smoothly from 100 to 100 * (1 + total)."""
    return 100 * (1 + total) ** (np.arange(L + 1) / L)


def crash(depth: float) -> np.ndarray:
    """Flat for half the window, then straight down by ``depth``."""
    path = np.full(L + 1, 100.0)
    path[L // 2:] = 100 * (1 - depth * np.linspace(0, 1, L + 1 - L // 2))
    return path


def handmade() -> tuple[np.ndarray, np.ndarray]:
    """30 windows: 10 steady rises (+5%), 9 flat-ish, 8 gentle declines (-5%), 3 crashes (-30%); expected labels."""
    wiggle = [100 * (1 + 0.001 * np.sin(np.arange(L + 1) + k)) for k in range(9)]
    paths = [steady(0.05)] * 10 + wiggle + [steady(-0.05)] * 8 + [crash(0.30)] * 3
    expected = [BULL] * 10 + [SIDEWAYS] * 9 + [BEAR] * 8 + [CRASH] * 3
    return np.array(paths), np.array(expected)


def test_max_drawdown_and_crash_duration_on_a_known_path():
    path = np.array([[100, 110, 99, 105, 88, 120]], dtype=float)
    depth, duration = max_drawdowns(path)
    assert depth[0] == pytest.approx(1 - 88 / 110) and duration[0] == 3  # peak 110 (bar 1) to trough 88 (bar 4)
    depth, duration = max_drawdowns(np.array([steady(0.1)]))
    assert depth[0] == 0 and duration[0] == 0
    depth, duration = max_drawdowns(np.array([crash(0.3)]))
    assert depth[0] == pytest.approx(0.3) and duration[0] == L - L // 2  # from the last flat bar to the end


def test_rise_is_bull_fall_is_bear_thirty_percent_drop_is_crash():
    paths, expected = handmade()
    definition, labels = auto_labels(paths)
    np.testing.assert_array_equal(labels, expected)
    depth, _ = max_drawdowns(paths)
    returns = paths[:, -1] / paths[:, 0] - 1
    assert definition.crash_drawdown == pytest.approx(np.quantile(depth, 0.9))  # worst 10% of the windows
    assert definition.bear_return == pytest.approx(np.quantile(returns, 0.3))
    assert definition.bull_return == pytest.approx(np.quantile(returns, 0.7))
    assert definition.names == AUTO_REGIMES


def test_given_thresholds_replace_the_quantiles():
    paths, _ = handmade()
    definition, labels = auto_labels(paths, crash_drawdown=0.4, bull_return=0.10)
    assert definition.crash_drawdown == 0.4 and definition.bull_return == 0.10
    assert (labels[-3:] == BEAR).all()  # a 30% drop is no crash when a crash needs 40%
    assert (labels[:10] == SIDEWAYS).all()  # +5% is not enough for bull at 10%
    _, labels = auto_labels(paths, q_crash=0.5)  # the worst half of the drawdowns: declines become crashes too
    assert (labels[19:] == CRASH).all() and (labels[:10] == BULL).all()


def test_bear_needs_a_fall_and_bull_a_rise_whatever_the_quantiles():
    rises = np.array([steady(r) for r in np.linspace(0.01, 0.2, 20)])
    _, labels = auto_labels(rises)
    assert BEAR not in labels and (labels[-6:] == BULL).all()
    falls = np.array([steady(-r) for r in np.linspace(0.001, 0.01, 20)])
    _, labels = auto_labels(falls, crash_drawdown=0.5)
    assert BULL not in labels and (labels[-6:] == BEAR).all()  # the six steepest falls


def test_definition_round_trips_through_json_and_labels_new_windows_the_same_way():
    paths, expected = handmade()
    definition, _ = auto_labels(paths, q_crash=0.1, q_bear=0.25, q_bull=0.75)
    loaded = RegimeDefinition.from_dict(json.loads(json.dumps(definition.to_dict())))
    assert loaded == definition
    np.testing.assert_array_equal(loaded.label(paths[::-1]), expected[::-1])  # fixed thresholds, any windows
    assert "crash: max drawdown >=" in loaded.describe()


@pytest.mark.parametrize("options, message", [({"q_crash": 0}, "q_crash"), ({"q_bull": 1.5}, "q_bull"),
                                              ({"q_bear": 0.8, "q_bull": 0.7}, "below q_bull")])
def test_bad_thresholds_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        RegimeDefinition(**options)


def test_regime_stats_per_label():
    paths, expected = handmade()
    stats = regime_stats(paths, expected, AUTO_REGIMES)
    assert stats["crash"]["windows"] == 3 and stats["crash"]["max_drawdown"] == pytest.approx(0.3)
    assert stats["bull"]["max_drawdown"] == 0 and stats["bull"]["mean_return"] == pytest.approx(0.05)
    assert stats["crash"]["crash_duration"] == L - L // 2
    assert set(regime_stats(paths[:10], expected[:10], AUTO_REGIMES)) == {"bull"}  # empty regimes left out


def test_window_paths_from_bars_start_at_the_first_open():
    bars = pd.DataFrame({"open": [10.0, 11, 12, 13], "close": [11.0, 12, 13, 14]})
    np.testing.assert_array_equal(bar_paths(bars, np.array([1, 2]), 2), [[11, 12, 13], [12, 13, 14]])
    np.testing.assert_array_equal(price_paths(np.array([1.0]), np.array([[2.0, 3.0]])), [[1, 2, 3]])


def test_column_labels_take_the_majority_and_ties_go_to_the_latest():
    per_bar = ["calm", "calm", "calm", "panic", "panic", "calm", "panic", "panic"]
    definition, labels = column_labels(per_bar, np.array([0, 1, 2, 4]), 4, "regime")
    assert definition.names == ("calm", "panic") and definition.method == "column"
    # windows: [c c c p] -> calm, [c c p p] tie -> panic (latest), [c p p c] tie -> calm (latest), [p c p p] -> panic
    np.testing.assert_array_equal(labels, [0, 1, 0, 1])
    with pytest.raises(DataError, match="not trained on"):
        column_labels(per_bar, np.array([0]), 4, "regime", names=("panic", "boom"))
    with pytest.raises(DataError, match="at least two regimes"):
        column_labels(["calm"] * 6, np.array([0, 1]), 4, "regime")
    with pytest.raises(DataError, match="empty"):
        column_labels(["calm", None, "calm", "x"], np.array([0]), 2, "regime")


def test_label_column_is_read_from_the_candle_file_by_bar_time(tmp_path):
    times = pd.date_range("2024-01-01", periods=6, freq="h", tz="UTC")
    raw = pd.DataFrame({"timestamp": times.strftime("%Y-%m-%dT%H:%M:%SZ"), "open": 1.0, "high": 1.0, "low": 1.0,
                        "close": 1.0, "volume": 1.0, "Regime": list("aabbcc")})
    path = tmp_path / "labelled.csv"
    raw.iloc[::-1].to_csv(path, index=False)  # unsorted in the file
    bars = pd.DataFrame({"time": times[1:5], "open": 1.0, "close": 1.0})
    assert list(bar_labels(bars, "regime", path)) == list("abbc")
    assert list(bar_labels(bars.assign(mine=list("wxyz")), "mine")) == list("wxyz")
    with pytest.raises(ConfigError, match="has no such column"):
        bar_labels(bars, "label", path)
    with pytest.raises(DataError, match="no label for 1 bar"):
        bar_labels(pd.DataFrame({"time": times[4:] + pd.Timedelta("1h")}), "regime", path)
