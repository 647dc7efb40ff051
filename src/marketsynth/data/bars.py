"""The canonical candle frame every part of marketsynth passes around.

A *bars frame* is a pandas DataFrame with columns ``time, open, high, low, close, volume``: ``time`` is the bar's
open time as tz-aware UTC (microsecond resolution), prices and volume are float64, rows are sorted by time and
unique. ``as_bars`` turns anything close to that into exactly that.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from marketsynth.errors import DataError

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
