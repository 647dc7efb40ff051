"""Evaluation inputs: long frames -> windows, window-relative features, real windows from bars, splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from marketsynth.data.bars import as_bars
from marketsynth.errors import DataError
from marketsynth.evaluation.inputs import (
    candle_windows,
    interleaved_split,
    timegan_windows,
    window_features,
    window_returns,
    windows_from_long_frame,
)
from marketsynth.representation import LogReturnRepresentation, candles_frame
from tests.conftest import shared_file
from tests.unit.evaluation_helpers import random_walk_candles


def test_long_frame_round_trip_in_any_row_order():
    candles = random_walk_candles(7, 5)
    frame = candles_frame(candles).sample(frac=1.0, random_state=1)
    np.testing.assert_array_equal(windows_from_long_frame(frame), candles)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="volume"), "lack column"),
        (lambda f: f.iloc[:-1], "different lengths"),
        (lambda f: f.assign(close=f["close"].where(f.index != 3)), "non-finite"),
        (lambda f: f.assign(timestep=0), "repeats a timestep"),
    ],
)
def test_long_frame_errors_say_what_is_wrong(change, message):
    frame = candles_frame(random_walk_candles(3, 4))
    with pytest.raises(DataError, match=message):
        windows_from_long_frame(change(frame))


def test_window_features_match_the_representation_anchored_at_the_first_open():
    candles = random_walk_candles(3, 6, seed=2)
    features = window_features(candles)
    rep = LogReturnRepresentation()
    for window, feats in zip(candles, features, strict=True):
        frame = pd.DataFrame(window, columns=["open", "high", "low", "close", "volume"])
        encoded = rep._encode_raw(frame, prev_close=window[0, 0])
        np.testing.assert_allclose(feats[:, :4], encoded[:, :4], atol=1e-12)
        np.testing.assert_allclose(feats[:, 4], encoded[:, 4] - encoded[:, 4].mean(), atol=1e-12)
    np.testing.assert_array_equal(features[:, 0, 0], 0.0)  # first gap is zero by construction
    np.testing.assert_allclose(window_returns(candles).sum(axis=1), np.log(candles[:, -1, 3] / candles[:, 0, 0]))


def test_window_features_are_scale_free_and_tolerate_invalid_candles():
    candles = random_walk_candles(2, 4)
    scaled = candles.copy()
    scaled[..., :4] *= 1000
    scaled[..., 4] = np.expm1(np.log1p(scaled[..., 4]) + 2.0)  # every bar of every window trades e^2 times more
    np.testing.assert_allclose(window_features(candles), window_features(scaled), atol=1e-9)
    candles[0, 1, 2] = -5.0  # negative low
    assert np.isfinite(window_features(candles)).all()


def test_candle_windows_never_span_a_gap():
    times = pd.date_range("2024-01-01", periods=40, freq="1h", tz="UTC").delete(slice(20, 23))
    candles = random_walk_candles(1, len(times))[0]
    bars = as_bars(pd.DataFrame(candles, columns=["open", "high", "low", "close", "volume"]).assign(time=times))
    windows, starts = candle_windows(bars, 8, return_starts=True)
    spans = bars["time"].to_numpy()[starts + 7] - bars["time"].to_numpy()[starts]
    assert (spans == np.timedelta64(7, "h")).all()
    np.testing.assert_array_equal(windows[0], candles[starts[0]: starts[0] + 8])


def test_timegan_windows_follow_the_reference_loader():
    values = pd.read_csv(shared_file("stock_data.csv")).to_numpy()
    windows = timegan_windows(values, 24, reverse=True, seed=0)
    assert windows.shape == (len(values) - 24, 24, 6)
    assert windows.min() >= 0 and windows.max() < 1
    np.testing.assert_array_equal(windows, timegan_windows(values, 24, reverse=True, seed=0))  # seeded
    forward = timegan_windows(values, 24, seed=0)
    # GOOG rose over the period: reversed windows run backwards in time, so their closes fall on average
    assert (windows[:, -1, 3] - windows[:, 0, 3]).mean() < 0 < (forward[:, -1, 3] - forward[:, 0, 3]).mean()


def test_interleaved_split_shares_no_bars_and_spreads_over_time():
    train, heldout = interleaved_split(3000, 24)
    assert np.abs(train[:, None] - heldout[None]).min() >= 24
    assert 0.25 < len(heldout) / 3000 < 0.35
    assert heldout.min() < 1000 and heldout.max() > 2000
