"""Training material for the learned direction strategies: per-bar features, direction labels, sequence windows.

Features (``feature_table``)
    Row ``t - WARMUP_BARS`` describes bar ``t`` (``t >= WARMUP_BARS``) from bars ``<= t`` only: the 16 indicators of
    ``marketsynth.features.bar_features`` (returns, volatility, momentum, volume ratio, range position, candle body
    and wicks, ATR, RSI) plus ``log_range = log(high / low)``. ``MICRO`` names the microstructure columns (body,
    wicks, the bar's return, its range and its volume ratio) the ensemble's dense head reads. A prefix of the bars
    gives exactly a prefix of the rows (``bar_features`` has no look-ahead and RSI is a forward recursion).

Labels (``forward_returns``)
    ``log(close[t + horizon] / close[t])``: the return a position taken at bar ``t``'s close earns over the next
    ``horizon`` bars; its sign is the direction label. NaN for the last ``horizon`` bars and for spans that cross a
    time gap (``marketsynth.data.bars.time_breaks`` with the bar length ``step``). Bars whose return is exactly 0
    carry no direction and are left out of training and out of ``direction_accuracy``.

Windows (``window_ends``)
    Sequences of ``seq_len`` consecutive feature rows are cut with the project's one window cutter
    (``representation.window_starts`` / ``take_windows``), so no window spans a time gap; a window is named by its
    last bar. The bar length is fixed when a strategy is fitted and passed explicitly, so which windows exist never
    depends on later bars.

Standardisation (``standardised``): the ``FeatureStandardiser`` fitted on training rows only, then clipped to
``±CLIP`` standard deviations so a volume spike or a crash bar cannot saturate a network.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from marketsynth.data.bars import time_breaks
from marketsynth.errors import DataError
from marketsynth.features import FEATURE_NAMES, WARMUP_BARS, FeatureStandardiser, bar_features
from marketsynth.representation import take_windows, window_starts

FEATURES = (*FEATURE_NAMES, "log_range")
MICRO = ("body_ratio", "upper_shadow", "lower_shadow", "return_1", "log_range", "volume_ratio")
MICRO_INDEX = tuple(FEATURES.index(name) for name in MICRO)
CLIP = 5.0
FIRST_ROW = WARMUP_BARS  # the bar the first feature row describes


def check_bars(bars: pd.DataFrame, what: str = "bars") -> pd.DataFrame:
    """The frame itself, or DataError when it is not a bars frame with a ``time`` column."""
    if not isinstance(bars, pd.DataFrame):
        raise DataError(f"{what} must be a bars frame (time, open, high, low, close, volume), got "
                        f"{type(bars).__name__}")
    missing = [c for c in ("time", "open", "high", "low", "close", "volume") if c not in bars.columns]
    if missing:
        raise DataError(f"{what} lack column(s) {', '.join(missing)}; expected time, open, high, low, close, volume")
    return bars


def feature_table(bars: pd.DataFrame) -> np.ndarray:
    """``[len(bars) - WARMUP_BARS, len(FEATURES)]`` float64 (row ``i`` is bar ``i + WARMUP_BARS``); empty rows
    when there are too few bars for one."""
    if len(bars) <= WARMUP_BARS:
        return np.empty((0, len(FEATURES)))
    frame = bar_features(bars)
    high = np.asarray(bars["high"], dtype=np.float64)[WARMUP_BARS:]
    low = np.asarray(bars["low"], dtype=np.float64)[WARMUP_BARS:]
    return np.column_stack([frame.to_numpy(dtype=np.float64), np.log(high / low)])


def bar_step(bars: pd.DataFrame) -> pd.Timedelta:
    """The most common step between bar times: the bar length that decides what is a time gap."""
    times = pd.DatetimeIndex(pd.to_datetime(bars["time"], utc=True))
    if len(times) < 2:
        raise DataError(f"need at least 2 bars to tell the bar length, got {len(times)}")
    steps = pd.Series(times[1:] - times[:-1])
    step = steps.mode()[0]
    if step <= pd.Timedelta(0):
        raise DataError("bars are not sorted by time; use marketsynth.data.bars.as_bars first")
    return step


def forward_returns(bars: pd.DataFrame, horizon: int, step: pd.Timedelta) -> np.ndarray:
    """``[len(bars)]``: ``log(close[t + horizon] / close[t])``; NaN past the end or across a time gap."""
    close = np.asarray(bars["close"], dtype=np.float64)
    n = len(close)
    out = np.full(n, np.nan)
    if n <= horizon:
        return out
    out[: n - horizon] = np.log(close[horizon:] / close[: n - horizon])
    gaps = np.concatenate([[0], np.cumsum(time_breaks(pd.to_datetime(bars["time"], utc=True), step))])
    crossed = gaps[horizon:] - gaps[: n - horizon] > 0
    out[: n - horizon][crossed] = np.nan
    return out


def window_ends(bars: pd.DataFrame, seq_len: int, step: pd.Timedelta) -> np.ndarray:
    """Last bar of every gap-free window of ``seq_len`` feature rows, in order (the same leading values for any
    prefix of the bars). The first possible one is bar ``WARMUP_BARS + seq_len - 1``; as everywhere windows are cut
    (``window_starts``), the bar before a window is in its gap-free run too, so after a gap the first window ends
    ``seq_len`` bars after the gap's first bar."""
    if len(bars) < FIRST_ROW + seq_len:
        return np.empty(0, dtype=np.int64)
    starts = window_starts(pd.to_datetime(bars["time"], utc=True), seq_len, step=step)
    starts = starts[starts >= FIRST_ROW]
    return (starts + seq_len - 1).astype(np.int64)


def sequences(rows: np.ndarray, ends: np.ndarray, seq_len: int) -> np.ndarray:
    """``[len(ends), seq_len, F]``: the standardised feature rows of the window ending at each bar in ``ends``."""
    return take_windows(rows, np.asarray(ends) - FIRST_ROW - seq_len + 1, seq_len)


def fit_standardiser(rows: np.ndarray) -> FeatureStandardiser:
    return FeatureStandardiser(names=FEATURES).fit(rows)


def standardised(rows: np.ndarray, standardiser: FeatureStandardiser) -> np.ndarray:
    """z-scores clipped to ``±CLIP``, float32 (what the networks read)."""
    if len(rows) == 0:
        return np.empty((0, len(FEATURES)), dtype=np.float32)
    return np.clip(standardiser.transform(rows), -CLIP, CLIP).astype(np.float32)


def labelled(returns: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The bars of ``rows`` that carry a direction (finite, non-zero forward return)."""
    values = returns[rows]
    return rows[np.isfinite(values) & (values != 0)]


def purged_split(rows: np.ndarray, fraction: float, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """``(earlier, held_out)``: the last ``fraction`` of ``rows`` (bar indices in time order) held out, and the
    earlier rows whose label ends at or before the first held-out bar (``t + horizon <= first``): no training
    label overlaps a held-out one."""
    n_held = max(1, int(round(len(rows) * fraction)))
    held = rows[len(rows) - n_held:]
    earlier = rows[: len(rows) - n_held]
    return earlier[earlier + horizon <= held[0]], held
