"""What the metrics are fed: candle windows ``[n, L, 5]`` in price units and their scale-free features.

Synthetic candles arrive as a long frame (``sample_id, timestep, open, high, low, close, volume``); real ones are
cut from a bars frame. Both are compared on *window-relative* features so that the price level (BTC at 9,000
in one window, 60,000 in another) does not give the synthetic data away, and scaled with the REAL data's
statistics so that a synthetic set cannot hide a shift by being scaled on its own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from marketsynth import splits
from marketsynth.errors import DataError
from marketsynth.representation import OHLCV, LogReturnRepresentation, take_windows, window_starts
from marketsynth.scaling import AffineScaler
from marketsynth.timeframes import Timeframe

FEATURE_NAMES = LogReturnRepresentation.feature_names  # gap, ret, upper, lower, volume
RETURN_COLUMN = FEATURE_NAMES.index("ret")
LONG_COLUMNS = ("sample_id", "timestep", *OHLCV)
_TINY = 1e-300  # stands in for non-positive prices so that invalid synthetic candles still give finite logs


def windows_from_long_frame(frame: pd.DataFrame) -> np.ndarray:
    """Candle windows ``[n, L, 5]`` from a long frame ``sample_id, timestep, open, high, low, close, volume``.

    Rows may come in any order; every sample must have the same number of timesteps. Invalid candles are kept
    (the validity rate measures them); missing or non-finite numbers are a DataError.
    """
    missing = [c for c in LONG_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"synthetic candles lack column(s) {', '.join(missing)}; expected {', '.join(LONG_COLUMNS)}"
        )
    if len(frame) == 0:
        raise DataError("synthetic candles: no rows")
    try:
        values = frame.loc[:, list(LONG_COLUMNS)].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"synthetic candles have non-numeric values ({exc})") from exc
    bad = int((~np.isfinite(values)).any(axis=1).sum())
    if bad:
        raise DataError(f"{bad} synthetic row(s) have empty or non-finite values; the generator diverged?")
    order = np.lexsort((values[:, 1], values[:, 0]))
    values = values[order]
    ids, counts = np.unique(values[:, 0], return_counts=True)
    if (counts != counts[0]).any():
        raise DataError(
            f"synthetic samples have different lengths ({counts.min()} to {counts.max()} timesteps); "
            "every sample_id needs the same number of rows"
        )
    steps = values[:, 1].reshape(len(ids), counts[0])
    if (np.diff(steps, axis=1) <= 0).any():
        raise DataError("some synthetic sample repeats a timestep; each (sample_id, timestep) must be unique")
    return np.ascontiguousarray(values[:, 2:].reshape(len(ids), counts[0], len(OHLCV)))


def candle_windows(
    bars: pd.DataFrame,
    seq_len: int,
    stride: int = 1,
    timeframe: str | Timeframe | None = None,
    *,
    return_starts: bool = False,
):
    """Real candle windows ``[n, seq_len, 5]`` cut from a bars frame, never spanning a time gap.

    The one window cutter (``representation.window_starts``) makes real windows exactly the ones models train on
    (same gap rule, the first bar of each gap-free run only serves as an anchor). ``return_starts`` also
    returns each window's first row in ``bars``.
    """
    if "time" not in bars.columns:
        raise DataError("bars need a sorted, unique 'time' column to be cut into windows; use as_bars first")
    starts = window_starts(bars["time"], seq_len, stride=stride, step=timeframe)
    if len(starts) == 0:
        raise DataError(f"no window of {seq_len} consecutive bars (plus the bar before it) fits in {len(bars)} bars")
    candles = take_windows(bars.loc[:, list(OHLCV)].to_numpy(dtype=np.float64), starts, seq_len)
    return (candles, starts) if return_starts else candles


def as_windows(data, what: str, seq_len: int) -> np.ndarray:
    """Candle windows ``[n, seq_len, 5]`` from an array, a long frame of samples (``sample_id, timestep, open, ...``,
    see ``windows_from_long_frame``) or a bars frame (``time, open, ...``, cut into stride-1 windows that never
    span a gap); a DataError naming ``what`` otherwise."""
    if isinstance(data, pd.DataFrame):
        if "sample_id" in data.columns:
            data = windows_from_long_frame(data)
        elif "time" in data.columns:
            data = candle_windows(data, seq_len)
        else:
            raise DataError(f"{what}: a frame needs either sample_id and timestep columns (generated samples) "
                            "or a time column (bars)")
    return check_windows(data, what, seq_len)


def check_windows(candles, what: str, seq_len: int | None = None) -> np.ndarray:
    """``candles`` as float64 ``[n, L, 5]`` with n >= 1, finite, or a DataError naming ``what``."""
    array = np.asarray(candles, dtype=np.float64)
    if array.ndim != 3 or array.shape[-1] != len(OHLCV) or array.shape[0] == 0 or array.shape[1] < 2:
        raise DataError(f"{what} must be candle windows shaped [n, L, 5] with L >= 2, got {array.shape}")
    if seq_len is not None and array.shape[1] != seq_len:
        raise DataError(
            f"{what} windows have {array.shape[1]} bars but seq_len is {seq_len}; use the same window length"
        )
    if not np.isfinite(array).all():
        raise DataError(f"{what} contain {int((~np.isfinite(array)).sum())} non-finite value(s)")
    return array


def window_features(candles: np.ndarray) -> np.ndarray:
    """Unscaled scale-free features ``[n, L, 5]`` (gap, ret, upper, lower, relative volume) of each window.

    The price features are ``LogReturnRepresentation``'s formulas with the window's first open standing in for
    the close before the window (so the first gap is 0 and the first ret is log(close/open)). Volume is
    log1p(volume) minus its mean over the window: like price, the volume *level* changes with the market's
    regime (a busy month trades twice a quiet one), and a classifier that could see it would win by learning
    which months a set of windows came from rather than how a window's bars move. So nothing here depends on
    price or volume level or on bars outside the window. Unlike the representation it does not reject invalid
    candles: a high below the body gives a negative wick, a non-positive price a huge log, which the metrics
    then see.
    """
    candles = np.asarray(candles, dtype=np.float64)
    prices = np.maximum(candles[..., :4], _TINY)
    o, h, low, c = np.moveaxis(prices, -1, 0)
    prev = np.concatenate([o[:, :1], c[:, :-1]], axis=1)
    body_top, body_bottom = np.maximum(o, c), np.minimum(o, c)
    return np.stack(
        [
            np.log(o / prev),
            np.log(c / prev),
            np.log(h / body_top),
            np.log(body_bottom / low),
            relative_log_volume(candles[..., 4]),
        ],
        axis=-1,
    )


def relative_log_volume(volume: np.ndarray) -> np.ndarray:
    """log1p(volume) minus its mean over each window (the last axis): the volume pattern without its level."""
    log_volume = np.log1p(np.maximum(np.asarray(volume, dtype=np.float64), 0.0))
    return log_volume - log_volume.mean(axis=-1, keepdims=True)


def window_returns(candles: np.ndarray) -> np.ndarray:
    """Close log returns ``[n, L]`` within each window; the first is log(close/open) of the first bar.

    For continuously traded markets the open equals the previous close, so these are L ordinary close-to-close
    returns and an L-bar window aggregates to one L-bar return.
    """
    return window_features(candles)[..., RETURN_COLUMN]


def FeatureScaler(real_features: np.ndarray) -> AffineScaler:  # noqa: N802 - kept as the evaluation's name
    """Per-feature z-scores with the mean and std of the REAL windows (a constant feature scales by 1)."""
    return AffineScaler.standard(real_features)


def MinMaxScaler(real: np.ndarray) -> AffineScaler:  # noqa: N802
    """The TimeGAN paper's scaling: (x - min) / (max - min + 1e-7) per column, min and max from REAL data."""
    return AffineScaler.unit(real)


def timegan_windows(values, seq_len: int = 24, *, reverse: bool = False, seed: int = 0) -> np.ndarray:
    """The TimeGAN reference loader: min-max scale a series ``[T, F]``, cut stride-1 windows, shuffle.

    Like the reference it cuts ``T - seq_len`` windows (its loop stops one short of the last possible window).
    The paper's Stocks run reverses the oldest-first ``stock_data.csv`` rows (``reverse=True``), so its windows
    run backwards in time.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or len(values) <= seq_len:
        raise DataError(f"need a series [T, F] with more than {seq_len} rows, got shape {values.shape}")
    if reverse:
        values = values[::-1]
    scaled = MinMaxScaler(values)(values)
    windows = take_windows(scaled, np.arange(len(values) - seq_len), seq_len)
    return windows[np.random.default_rng(seed).permutation(len(windows))]


def interleaved_split(n: int, seq_len: int, heldout_fraction: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices of ``n`` windows in time order: interleaved blocks, no shared bars.

    Blocks of max(2 * seq_len, n / 30) consecutive windows; ``heldout_fraction`` of them, spread evenly over
    the whole period, are held out, so both parts see the same market regimes (a chronological split would
    hold out only the last regime). Training windows within ``seq_len - 1`` positions of a held-out window
    are dropped: with stride-1 windows they would share bars with it.
    """
    heldout = splits.interleaved(n, max(2 * seq_len, -(-n // 30)), heldout_fraction)
    train = np.flatnonzero(~splits.near(heldout, seq_len - 1))
    if len(train) == 0 or len(train) == n:
        raise DataError(f"{n} windows of {seq_len} bars are too few to split into training and held-out parts")
    return train, np.flatnonzero(heldout)


def subsample(array: np.ndarray, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``limit`` rows of ``array`` drawn without replacement (all of them, in order, if fewer)."""
    if limit is None or len(array) <= limit:
        return array
    return array[np.sort(rng.choice(len(array), size=limit, replace=False))]
