"""Windows: the one cutter of gap-free windows of consecutive bars, and the window-level split.

A *gap* is a step between consecutive bar times longer than one bar (``data.bars.time_breaks``, the one gap rule).
``window_starts`` gives the first row of every window of ``seq_len`` bars that stays inside one gap-free run (each
window also needs the bar before it, its anchor: the previous close); ``take_windows`` cuts any per-bar array at those
starts. Everything that needs windows of bars (models, evaluation, regimes) cuts them here.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from marketsynth.data.bars import time_breaks
from marketsynth.errors import ConfigError, DataError
from marketsynth.representation.encoding import Representation
from marketsynth.timeframes import Timeframe


class Windows(NamedTuple):
    """Training windows with what is needed to map them back to the bars they came from."""

    features: np.ndarray  # [N, seq_len, F] encoded (scaled) features
    anchors: np.ndarray  # [N] close before each window's first bar: decode(features, anchors) gives its bars
    start_index: np.ndarray  # [N] row of each window's first bar in the bars frame (to align labels)


def create_sequences(features: np.ndarray, seq_len: int, stride: int = 1) -> np.ndarray:
    """Overlapping windows ``[N, seq_len, F]`` of ``features [T, F]``, one every ``stride`` rows (a copy)."""
    return _window_view(features, seq_len, stride)[::stride].copy()


def window_starts(times, seq_len: int, *, stride: int = 1, step=None) -> np.ndarray:
    """First rows of every window of ``seq_len`` consecutive bars inside one gap-free run, each with the bar before
    it (its anchor) in the same run; every ``stride``-th of them. ``step``: the bar length that decides gaps (a
    timeframe; the most common step when None). Empty when no window fits."""
    _check_window_args(seq_len, stride)
    times = pd.DatetimeIndex(times)
    if not times.is_monotonic_increasing or not times.is_unique:
        raise DataError("bars need a sorted, unique 'time' column to be cut into windows; use as_bars first")
    run_id = np.concatenate([[0], np.cumsum(time_breaks(times, step))])
    starts = np.arange(1, len(times) - seq_len + 1)
    return starts[run_id[starts - 1] == run_id[starts + seq_len - 1]][::stride]


def take_windows(values: np.ndarray, starts: np.ndarray, seq_len: int) -> np.ndarray:
    """``values[s : s + seq_len]`` for every start ``s``, stacked: ``[n, seq_len, ...]`` (a copy)."""
    return np.asarray(values)[np.asarray(starts)[:, None] + np.arange(seq_len)]


def windows_from_bars(
    bars: pd.DataFrame,
    representation: Representation,
    seq_len: int,
    stride: int = 1,
    timeframe: str | Timeframe | None = None,
) -> Windows:
    """Encoded windows that never span a time gap (``window_starts``), with their anchors and start rows.

    Each window's bars have their real previous close inside the same gap-free run, so the first bar of a run only
    serves as an anchor and a run needs ``seq_len + 1`` bars; shorter runs are skipped.
    """
    _check_window_args(seq_len, stride)
    if "time" not in bars.columns:
        raise DataError("bars need a sorted, unique 'time' column to be cut into windows; use as_bars first")
    features = representation.encode(bars)  # row i is relative to close[i-1]; rows after a gap go unused
    starts = window_starts(bars["time"], seq_len, stride=stride, step=timeframe)
    if len(starts) == 0:
        breaks = time_breaks(pd.DatetimeIndex(bars["time"]), timeframe)
        longest = int(np.bincount(np.concatenate([[0], np.cumsum(breaks)])).max())
        raise DataError(
            f"one window of {seq_len} bars needs {seq_len + 1} consecutive bars (the first is its anchor); "
            f"the longest gap-free run has {longest}"
        )
    close = bars["close"].to_numpy(dtype=np.float64)
    return Windows(take_windows(features, starts, seq_len), close[starts - 1], starts)


def _window_view(features: np.ndarray, seq_len: int, stride: int) -> np.ndarray:
    """Read-only view ``[T - seq_len + 1, seq_len, F]`` of every window, after checking the arguments."""
    _check_window_args(seq_len, stride)
    features = np.asarray(features)
    if features.ndim != 2:
        raise DataError(f"features must be a 2-D array [T, F], got shape {features.shape}")
    if len(features) < seq_len:
        raise DataError(f"one window of {seq_len} bars needs at least {seq_len} bars, got {len(features)}")
    return np.moveaxis(sliding_window_view(features, seq_len, axis=0), -1, 1)


def _check_window_args(seq_len: int, stride: int) -> None:
    if seq_len < 1 or stride < 1:
        raise ConfigError(f"seq_len and stride must be at least 1, got seq_len={seq_len}, stride={stride}")


