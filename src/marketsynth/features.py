"""Per-bar feature vectors (the seed's 16 indicators) and the standardiser the flow model learns them through.

``bar_features(bars)`` turns OHLCV candles into one 16-number description of each bar *and its recent past*:
returns, volatility, momentum, volume, position in the recent range, candle shape, ATR and RSI. Unlike
``marketsynth.representation`` these are not invertible back to candles; they are what the Glow flow models
(a density over market states, for sampling states and scoring how unusual a bar is).

Definitions (``c`` close, ``o`` open, ``h`` high, ``l`` low, ``v`` volume, ``r_t = log(c_t / c_{t-1})``):

=================  ==========================================================================================
return_k           ``log(c_t / c_{t-k})`` for k = 1, 5, 10, 20
volatility_k       sample std (ddof=1) of ``r`` over the last k bars (``r_{t-k+1} .. r_t``), k = 5, 20
vol_ratio          ``volatility_5 / volatility_20``; 1 when both are 0 (a flat market)
momentum_k         ``c_t / c_{t-k} - 1`` for k = 10, 20
volume_ratio       ``v_t / mean(v_{t-19} .. v_t)``; 1 when that mean is 0 (no trades in 20 bars)
price_position     ``(c_t - min l) / (max h - min l)`` over the last 20 bars, in [0, 1]; 0.5 for a zero range
body_ratio         ``(c - o) / (h - l)`` in [-1, 1]
upper_shadow       ``(h - max(o, c)) / (h - l)`` in [0, 1]
lower_shadow       ``(min(o, c) - l) / (h - l)`` in [0, 1]  (all three are 0 for a doji with h == l)
atr_norm           mean true range of the last 14 bars / ``c_t``; true range
                   ``max(h - l, |h - c_{t-1}|, |l - c_{t-1}|)``
rsi                14-bar RSI with Wilder's smoothing, in [0, 100]: averages seeded by the simple mean of the
                   first 14 gains/losses, then ``avg_t = (13 avg_{t-1} + x_t) / 14``; 100 with no losses, 50
                   when nothing moved
=================  ==========================================================================================

No look-ahead: row t uses bar t and earlier bars only, so the features of a prefix of the bars are exactly the
prefix of the features. The first ``WARMUP_BARS`` (20) bars only serve as history and get no row. Rows are
consecutive bars; a time gap in the data is treated as if the bars were adjacent.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from marketsynth.errors import DataError, ModelError
from marketsynth.representation import valid_ohlcv
from marketsynth.scaling import AffineScaler

FEATURE_NAMES = (
    "return_1", "return_5", "return_10", "return_20",
    "volatility_5", "volatility_20", "vol_ratio",
    "momentum_10", "momentum_20",
    "volume_ratio", "price_position",
    "body_ratio", "upper_shadow", "lower_shadow",
    "atr_norm", "rsi",
)
WARMUP_BARS = 20  # return_20 and volatility_20 need 20 earlier bars: the first row is the 21st bar
ATR_BARS = RSI_BARS = 14
_STANDARDISER_FORMAT = "marketsynth.feature-standardiser"


def bar_features(bars: pd.DataFrame) -> pd.DataFrame:
    """The 16 features (``FEATURE_NAMES``) of every bar after the first ``WARMUP_BARS``, indexed by bar time.

    ``bars`` is a bars frame (``time, open, high, low, close, volume``, sorted); without a ``time`` column the
    result keeps the frame's own index. Raises DataError for missing columns, non-positive or non-finite prices,
    negative volumes, unsorted times or fewer than ``WARMUP_BARS + 1`` bars. The result has no NaN or inf.
    """
    o, h, low, c, v = _checked_ohlcv(bars)
    rng = h - low
    flat = rng <= 0
    safe_rng = np.where(flat, 1.0, rng)
    log_c = np.log(c)
    r1 = np.diff(log_c, prepend=np.nan)  # r1[0] is undefined and never used after the warm-up
    prev_c = np.concatenate([[np.nan], c[:-1]])
    true_range = np.maximum(rng, np.maximum(np.abs(h - prev_c), np.abs(low - prev_c)))

    columns: dict[str, np.ndarray] = {}
    for k in (1, 5, 10, 20):
        columns[f"return_{k}"] = log_c - _lagged(log_c, k)
    vol5, vol20 = _rolling(r1, 5).std(axis=-1, ddof=1), _rolling(r1, 20).std(axis=-1, ddof=1)
    columns["volatility_5"], columns["volatility_20"] = vol5, vol20
    columns["vol_ratio"] = np.divide(vol5, vol20, out=np.ones_like(vol5), where=vol20 > 0)
    for k in (10, 20):
        columns[f"momentum_{k}"] = c / _lagged(c, k) - 1.0
    mean_v = _rolling(v, 20).mean(axis=-1)
    columns["volume_ratio"] = np.divide(v, mean_v, out=np.ones_like(v), where=mean_v > 0)
    lowest, highest = _rolling(low, 20).min(axis=-1), _rolling(h, 20).max(axis=-1)
    span = highest - lowest
    columns["price_position"] = np.divide(c - lowest, span, out=np.full_like(c, 0.5), where=span > 0)
    columns["body_ratio"] = np.where(flat, 0.0, (c - o) / safe_rng)
    columns["upper_shadow"] = np.where(flat, 0.0, (h - np.maximum(o, c)) / safe_rng)
    columns["lower_shadow"] = np.where(flat, 0.0, (np.minimum(o, c) - low) / safe_rng)
    columns["atr_norm"] = _rolling(true_range, ATR_BARS).mean(axis=-1) / c
    columns["rsi"] = wilder_rsi(c, RSI_BARS)

    index = pd.DatetimeIndex(bars["time"], name="time") if "time" in bars.columns else bars.index
    frame = pd.DataFrame({name: columns[name] for name in FEATURE_NAMES}, index=index)
    frame = frame.iloc[WARMUP_BARS:]
    if not np.isfinite(frame.to_numpy()).all():  # a guard above is missing; never hand NaNs to a model
        bad = frame.columns[~np.isfinite(frame.to_numpy()).all(axis=0)]
        raise DataError(f"bar features {', '.join(bad)} are not finite; the bars are too extreme to describe")
    return frame


def wilder_rsi(close: np.ndarray, period: int = RSI_BARS) -> np.ndarray:
    """RSI in [0, 100] with Wilder's smoothing; NaN for the first ``period`` bars (see the module docstring)."""
    close = np.asarray(close, dtype=np.float64)
    rsi = np.full(len(close), np.nan)
    if len(close) <= period:
        return rsi
    delta = np.diff(close)
    gains, losses = np.maximum(delta, 0.0), np.maximum(-delta, 0.0)
    avg_gain, avg_loss = gains[:period].mean(), losses[:period].mean()
    for t in range(period, len(close)):  # rsi[t] uses delta[t-1] = close[t] - close[t-1]
        if t > period:
            avg_gain = (avg_gain * (period - 1) + gains[t - 1]) / period
            avg_loss = (avg_loss * (period - 1) + losses[t - 1]) / period
        if avg_loss > 0:
            rsi[t] = 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
        else:
            rsi[t] = 100.0 if avg_gain > 0 else 50.0
    return rsi


class FeatureStandardiser:
    """Per-feature z-scores fitted on training rows: ``(x - mean) / std``; a constant feature keeps std 1.

    Its parameters are plain lists (``to_dict`` / ``from_dict``) so a model can keep them in its JSON state.
    ``log_abs_det`` is ``-sum(log std)``: add it to a density of standardised rows to get the density of raw rows.
    """

    def __init__(self, mean=None, std=None, names=FEATURE_NAMES):
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.std = None if std is None else np.asarray(std, dtype=np.float64)
        self.names = tuple(names)

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    def fit(self, rows) -> FeatureStandardiser:
        rows = _rows(rows, None)
        if len(rows) < 2:
            raise DataError(f"the standardiser needs at least 2 rows to fit, got {len(rows)}")
        scaler = AffineScaler.standard(rows)
        self.mean, self.std = scaler.center, scaler.scale
        if len(self.names) != rows.shape[1]:
            self.names = tuple(f"feature_{i}" for i in range(rows.shape[1]))
        return self

    def transform(self, rows) -> np.ndarray:
        self._require_fitted()
        return AffineScaler(self.mean, self.std)(_rows(rows, len(self.mean)))

    def inverse_transform(self, rows) -> np.ndarray:
        self._require_fitted()
        return AffineScaler(self.mean, self.std).inverse(_rows(rows, len(self.mean)))

    @property
    def log_abs_det(self) -> float:
        self._require_fitted()
        return AffineScaler(self.mean, self.std).log_abs_det

    def to_dict(self) -> dict:
        return {
            "format": _STANDARDISER_FORMAT,
            "names": list(self.names),
            "mean": None if self.mean is None else [float(x) for x in self.mean],
            "std": None if self.std is None else [float(x) for x in self.std],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> FeatureStandardiser:
        if not isinstance(data, Mapping) or data.get("format") != _STANDARDISER_FORMAT:
            raise ModelError(f"not a saved feature standardiser (expected format '{_STANDARDISER_FORMAT}')")
        mean, std = data.get("mean"), data.get("std")
        if (mean is None) != (std is None):
            raise ModelError("saved feature standardiser has a mean without a std (or the reverse)")
        out = cls(mean, std, data.get("names") or FEATURE_NAMES)
        if out.fitted and (out.mean.shape != out.std.shape or out.mean.ndim != 1 or not (out.std > 0).all()
                           or not np.isfinite(out.mean).all() or not np.isfinite(out.std).all()):
            raise ModelError("saved feature standardiser is malformed: mean/std must be equal-length finite "
                             "lists with positive std")
        return out

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise ModelError("the feature standardiser is not fitted; fit it on training rows first")


# ---- internals ---------------------------------------------------------------------------------------------
def _checked_ohlcv(bars: pd.DataFrame) -> tuple[np.ndarray, ...]:
    if not isinstance(bars, pd.DataFrame):
        raise DataError(f"bar_features needs a bars frame, got {type(bars).__name__}")
    missing = [c for c in ("open", "high", "low", "close", "volume") if c not in bars.columns]
    if missing:
        raise DataError(f"bars lack column(s) {', '.join(missing)}; expected time, open, high, low, close, volume")
    if len(bars) <= WARMUP_BARS:
        raise DataError(f"bar features need at least {WARMUP_BARS + 1} bars ({WARMUP_BARS} of history), "
                        f"got {len(bars)}")
    if "time" in bars.columns and not pd.Index(bars["time"]).is_monotonic_increasing:
        raise DataError("bars are not sorted by time; use marketsynth.data.bars.as_bars first")
    o, h, low, c, v = valid_ohlcv(bars).T  # the representation's candle rules and messages
    return o, h, low, c, v


def _lagged(values: np.ndarray, k: int) -> np.ndarray:
    """``values`` shifted k bars later (NaN for the first k)."""
    out = np.full_like(values, np.nan)
    out[k:] = values[:-k]
    return out


def _rolling(values: np.ndarray, k: int) -> np.ndarray:
    """``[T, k]`` windows ending at each bar (rows before the first full window are NaN)."""
    out = np.full((len(values), k), np.nan)
    out[k - 1:] = sliding_window_view(values, k)
    return out


def _rows(rows, n_columns: int | None) -> np.ndarray:
    array = np.asarray(rows.to_numpy() if isinstance(rows, pd.DataFrame) else rows, dtype=np.float64)
    if array.ndim != 2 or (n_columns is not None and array.shape[1] != n_columns):
        width = "F" if n_columns is None else str(n_columns)
        raise DataError(f"feature rows must be a 2-D array [n, {width}], got shape {array.shape}")
    return array
