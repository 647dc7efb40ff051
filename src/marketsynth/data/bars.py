"""The canonical candle frame every part of marketsynth passes around.

A *bars frame* is a pandas DataFrame with columns ``time, open, high, low, close, volume``: ``time`` is the bar's
open time as tz-aware UTC (microsecond resolution), prices and volume are float64, rows are sorted by time and
unique. ``as_bars`` turns anything close to that into exactly that.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from marketsynth.errors import DataError
from marketsynth.timeframes import parse_timeframe

BAR_COLUMNS = ["time", "open", "high", "low", "close", "volume"]
PRICE_COLUMNS = ["open", "high", "low", "close"]
TIME_DTYPE = "datetime64[us, UTC]"


def empty_bars() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in BAR_COLUMNS})
    frame["time"] = pd.Series(dtype=TIME_DTYPE)
    return frame


def as_bars(frame: pd.DataFrame, *, source: str = "data", dedupe: bool = True) -> pd.DataFrame:
    """Coerce to a bars frame: typed columns, UTC times, sorted, duplicates dropped (last row wins).

    ``dedupe=False`` keeps duplicate times (so ``data check`` can count them).
    """
    missing = [c for c in BAR_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{source} lacks column(s) {', '.join(missing)}; expected {', '.join(BAR_COLUMNS)}")
    out = frame.loc[:, BAR_COLUMNS].copy()
    out["time"] = _as_utc_times(out["time"], source)
    for column in BAR_COLUMNS[1:]:
        out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
    out = out.sort_values("time", kind="stable")
    if dedupe:
        out = out.drop_duplicates("time", keep="last")
    return out.reset_index(drop=True)


def _as_utc_times(values: pd.Series, source: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values):
        times = pd.to_datetime(values.astype("int64"), unit="ms", utc=True)
    else:
        try:
            times = pd.to_datetime(values, utc=True, format="mixed")
        except (ValueError, TypeError) as exc:
            raise DataError(f"{source} has unreadable timestamps ({exc}); use ISO 8601 or epoch milliseconds") from exc
    if times.isna().any():
        raise DataError(f"{source} has {int(times.isna().sum())} empty timestamp(s); fix or remove those rows")
    return times.astype(TIME_DTYPE)


def bars_from_rows(rows: list[list], *, source: str = "exchange") -> pd.DataFrame:
    """Rows of ``[open_time_ms, open, high, low, close, volume]`` (numbers or numeric strings)."""
    if not rows:
        return empty_bars()
    array = np.asarray(rows, dtype=object)
    frame = pd.DataFrame(
        {
            "time": pd.to_numeric(array[:, 0]).astype("int64"),
            **{name: pd.to_numeric(array[:, i + 1]) for i, name in enumerate(BAR_COLUMNS[1:])},
        }
    )
    return as_bars(frame, source=source)


# ---- the one candle-validity rule and the one gap rule ------------------------------------------------------
def valid_candles(ohlcv) -> np.ndarray:
    """``[...]`` bool per candle of an array ``[..., 5]`` (open, high, low, close, volume): finite,
    ``0 < low <= min(open, close)``, ``max(open, close) <= high`` and ``volume >= 0``."""
    array = np.asarray(ohlcv, dtype=np.float64)
    o, h, low, c, v = (array[..., k] for k in range(5))
    with np.errstate(invalid="ignore"):
        return (np.isfinite(array).all(axis=-1) & (low > 0) & (low <= np.minimum(o, c))
                & (h >= np.maximum(o, c)) & (v >= 0))


def time_breaks(times, step=None) -> np.ndarray:
    """``[T - 1]`` bool: whether the step into each bar is longer than one bar. ``step`` is the bar length (a
    Timedelta, or a timeframe such as ``"1h"``); the most common step between the times when None. A week for
    trading-day samples makes weekends closures, not gaps."""
    times = pd.DatetimeIndex(times)
    if len(times) < 2:
        return np.zeros(0, dtype=bool)
    steps = times[1:] - times[:-1]
    if step is None:
        step = pd.Series(steps).mode()[0]
    elif not isinstance(step, pd.Timedelta):
        step = parse_timeframe(step).delta
    return np.asarray(times[1:] > times[:-1] + step)


def gap_free_runs(times, step=None) -> list[slice]:
    """Row ranges of consecutive bars (no gap inside by ``time_breaks``), in order; together they cover every row."""
    n = len(times)
    if n == 0:
        return []
    cuts = np.flatnonzero(time_breaks(times, step)) + 1
    edges = [0, *cuts.tolist(), n]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]
