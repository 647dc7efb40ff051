"""OHLCV resampling (15m → 1h → 4h → 1d ...): open first, high max, low min, close last, volume sum.

Only complete buckets are produced: a 4h bar needs all four 1h bars, so a gap never turns into a wrong candle.
Buckets align as the exchanges align them: UTC midnight for days, Monday 00:00 for weeks, the 1st for months.
"""

from __future__ import annotations

import pandas as pd

from marketsynth.data.bars import as_bars, empty_bars
from marketsynth.errors import ConfigError
from marketsynth.timeframes import Timeframe, parse_timeframe


def bucket_starts(times: pd.Series, target: Timeframe) -> pd.Series:
    """Open time of the ``target`` bar that contains each time."""
    if target.name == "1M":
        return times.dt.tz_localize(None).dt.to_period("M").dt.start_time.dt.tz_localize("UTC").astype(times.dtype)
    if target.name == "1w":
        day = times.dt.floor("1D")
        return day - pd.to_timedelta(day.dt.day_of_week, unit="D")
    return times.dt.floor(pd.Timedelta(seconds=target.seconds))


def check_resample(source: Timeframe | str, target: Timeframe | str) -> tuple[Timeframe, Timeframe]:
    src, dst = parse_timeframe(source), parse_timeframe(target)
    if src.seconds is None:
        raise ConfigError(f"cannot resample from {src.name}; months are the largest timeframe")
    if dst.seconds is not None and (dst.seconds <= src.seconds or dst.seconds % src.seconds):
        raise ConfigError(f"cannot resample {src.name} to {dst.name}: the target must be a whole multiple "
                          f"of the source (e.g. 15m → 1h → 4h → 1d)")
    if dst.seconds is None and 86400 % src.seconds:
        raise ConfigError(f"cannot resample {src.name} to {dst.name}: days must divide into {src.name} bars")
    return src, dst


def resample_bars(frame: pd.DataFrame, source: Timeframe | str, target: Timeframe | str) -> pd.DataFrame:
    """Aggregate ``source`` bars into complete ``target`` bars."""
    src, dst = check_resample(source, target)
    bars = as_bars(frame)
    if bars.empty:
        return empty_bars()
    grouped = bars.groupby(bucket_starts(bars["time"], dst), sort=True)
    out = grouped.agg(open=("open", "first"), high=("high", "max"), low=("low", "min"),
                      close=("close", "last"), volume=("volume", "sum"), count=("open", "size"))
    starts = out.index.to_series()
    ends = starts + dst.delta
    expected = ((ends - starts) / pd.Timedelta(seconds=src.seconds)).round().astype("int64")
    complete = out[out["count"].to_numpy() == expected.to_numpy()]
    result = complete.drop(columns="count").rename_axis("time").reset_index()
    return as_bars(result)
