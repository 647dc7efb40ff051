"""Bar features: hand-computed values, guards for flat markets, no look-ahead; the standardiser."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from marketsynth.errors import DataError, ModelError
from marketsynth.features import FEATURE_NAMES, WARMUP_BARS, FeatureStandardiser, bar_features, wilder_rsi


def make_bars(close, *, opens=None, wick=0.5, volume=None) -> pd.DataFrame:
    close = np.asarray(close, dtype=float)
    opens = np.concatenate([[close[0]], close[:-1]]) if opens is None else np.asarray(opens, dtype=float)
    volume = np.ones(len(close)) if volume is None else np.asarray(volume, dtype=float)
    return pd.DataFrame({
        "time": pd.date_range("2024-01-01", periods=len(close), freq="h", tz="UTC"),
        "open": opens, "high": np.maximum(opens, close) + wick, "low": np.minimum(opens, close) - wick,
        "close": close, "volume": volume,
    })


def random_bars(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    opens = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0, 0.001, n))
    bars = make_bars(close, opens=opens, volume=rng.exponential(5.0, n))
    bars["high"] += rng.exponential(0.3, n)
    bars["low"] -= rng.exponential(0.3, n)
    return bars


def test_hand_computed_values_on_an_alternating_market():
    # closes 100, 101, 100, ... (21 bars, last close 100); each bar opens at the previous close, wicks of 0.5
    close = [100.0 if t % 2 == 0 else 101.0 for t in range(21)]
    volume = [1.0] * 20 + [3.0]
    row = bar_features(make_bars(close, volume=volume)).iloc[-1]
    a = math.log(1.01)
    expected = {
        "return_1": -a, "return_5": math.log(100 / 101), "return_10": 0.0, "return_20": 0.0,
        "volatility_5": a * math.sqrt(1.2),  # r = -a, a, -a, a, -a: squared deviations sum 4.8 a^2, ddof 1
        "volatility_20": a * math.sqrt(20 / 19),  # ten +a, ten -a
        "vol_ratio": math.sqrt(1.2 * 19 / 20),
        "momentum_10": 0.0, "momentum_20": 0.0,
        "volume_ratio": 3 / 1.1,  # mean volume over 20 bars = 22 / 20
        "price_position": (100 - 99.5) / (101.5 - 99.5),
        "body_ratio": -0.5, "upper_shadow": 0.25, "lower_shadow": 0.25,  # open 101, close 100, range 2
        "atr_norm": 2 / 100,  # every true range is 2 (the gap to the previous close is inside the range)
    }
    for name, value in expected.items():
        assert row[name] == pytest.approx(value, rel=1e-12, abs=1e-15), name
    assert row["rsi"] == pytest.approx(wilder_rsi(np.asarray(close))[-1])


def test_wilder_rsi_by_hand():
    close = np.array([100.0 if t % 2 == 0 else 101.0 for t in range(17)])
    rsi = wilder_rsi(close, 14)
    assert np.isnan(rsi[:14]).all()
    assert rsi[14] == pytest.approx(50.0)  # first averages: 7 gains and 7 losses of 1 -> 0.5 / 0.5
    assert rsi[15] == pytest.approx(100 - 100 / (1 + 7.5 / 6.5))  # a gain: (0.5*13 + 1)/14 vs 0.5*13/14
    gain16, loss16 = 7.5 * 13 / 14 / 14, (6.5 * 13 / 14 + 1) / 14
    assert rsi[16] == pytest.approx(100 - 100 / (1 + gain16 / loss16))
    assert wilder_rsi(np.linspace(100, 120, 20))[-1] == 100.0  # only gains
    assert wilder_rsi(np.full(20, 7.0))[-1] == 50.0  # nothing moved


def test_shape_names_index_and_warmup():
    bars = random_bars(60)
    features = bar_features(bars)
    assert list(features.columns) == list(FEATURE_NAMES) and len(FEATURE_NAMES) == 16
    assert len(features) == len(bars) - WARMUP_BARS
    assert features.index.equals(pd.DatetimeIndex(bars["time"].iloc[WARMUP_BARS:], name="time"))
    assert np.isfinite(features.to_numpy()).all()
    assert features["price_position"].between(0, 1).all()
    assert features["body_ratio"].between(-1, 1).all()
    assert features["rsi"].between(0, 100).all()
    shape_sum = features["body_ratio"].abs() + features["upper_shadow"] + features["lower_shadow"]
    np.testing.assert_allclose(shape_sum, 1.0)


def test_flat_market_and_doji_give_no_nans():
    bars = make_bars(np.full(30, 50.0), wick=0.0, volume=np.zeros(30))  # high == low == open == close, no trades
    features = bar_features(bars)
    assert np.isfinite(features.to_numpy()).all()
    row = features.iloc[-1]
    assert row["vol_ratio"] == 1.0 and row["volume_ratio"] == 1.0 and row["price_position"] == 0.5
    assert row["body_ratio"] == row["upper_shadow"] == row["lower_shadow"] == 0.0
    assert row["rsi"] == 50.0 and row["atr_norm"] == 0.0 and row["volatility_20"] == 0.0


def test_a_single_doji_inside_a_moving_market():
    bars = random_bars(40)
    bars.loc[30, ["open", "high", "low", "close"]] = bars.loc[29, "close"]
    row = bar_features(bars).loc[bars["time"].iloc[30]]
    assert np.isfinite(row.to_numpy()).all()
    assert row["body_ratio"] == row["upper_shadow"] == row["lower_shadow"] == 0.0


def test_no_look_ahead_prefix_features_are_the_prefix_of_features():
    bars = random_bars(300, seed=3)
    full = bar_features(bars).to_numpy()
    for stop in (WARMUP_BARS + 1, 57, 150, 299):
        prefix = bar_features(bars.iloc[:stop]).to_numpy()
        np.testing.assert_array_equal(prefix, full[: stop - WARMUP_BARS])
    changed = bars.copy()  # rewriting the future leaves every earlier row untouched
    changed.loc[200:, ["open", "high", "low", "close"]] *= 3.0
    np.testing.assert_array_equal(bar_features(changed).to_numpy()[: 200 - WARMUP_BARS],
                                  full[: 200 - WARMUP_BARS])


def test_bad_input_is_a_data_error():
    with pytest.raises(DataError, match="at least 21 bars"):
        bar_features(random_bars(WARMUP_BARS))
    broken = random_bars(40)
    broken.loc[5, "low"] = -1.0
    with pytest.raises(DataError, match="not valid candles"):
        bar_features(broken)
    with pytest.raises(DataError, match="lack column"):
        bar_features(random_bars(40).drop(columns="volume"))
    with pytest.raises(DataError, match="not sorted"):
        bar_features(random_bars(40).iloc[::-1])


def test_standardiser_round_trip_and_json_state():
    rows = np.random.default_rng(1).normal(5.0, 3.0, size=(500, 16))
    rows[:, 3] = 2.0  # a constant feature keeps std 1 instead of dividing by zero
    std = FeatureStandardiser().fit(rows)
    z = std.transform(rows)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.delete(z.std(axis=0), 3), 1.0)
    assert std.std[3] == 1.0
    np.testing.assert_allclose(std.inverse_transform(z), rows)
    assert std.log_abs_det == pytest.approx(-np.log(std.std).sum())
    again = FeatureStandardiser.from_dict(json.loads(json.dumps(std.to_dict())))
    np.testing.assert_array_equal(again.transform(rows), z)
    assert again.names == FEATURE_NAMES
    with pytest.raises(ModelError, match="not fitted"):
        FeatureStandardiser().transform(rows)
    with pytest.raises(ModelError, match="not a saved feature standardiser"):
        FeatureStandardiser.from_dict({"mean": [0.0]})
    with pytest.raises(DataError, match=r"\[n, 16\]"):
        std.transform(rows[:, :5])
