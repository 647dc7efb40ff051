"""Candle intervals: one canonical name per interval and the spellings each exchange uses.

Canonical names follow Binance (``1m 5m 15m 1h 4h 1d 1w 1M``); Bybit's codes (``1 5 15 60 240 D W M``) are
accepted anywhere a timeframe is. Note ``1m`` is one minute and ``1M`` one month.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from marketsynth.errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class Timeframe:
    name: str  # canonical, e.g. "1h"
    bybit: str | None  # Bybit v5 interval code, None when Bybit has no such interval
    binance: str | None  # Binance interval code
    pandas_freq: str  # bar-open alignment for pandas (weeks open on Monday, months on the 1st)
    seconds: int | None  # fixed length; None for calendar months

    @property
    def delta(self) -> pd.Timedelta | pd.DateOffset:
        return pd.Timedelta(seconds=self.seconds) if self.seconds else pd.DateOffset(months=1)

    @property
    def milliseconds(self) -> int:
        """Nominal length in ms (a month counts 31 days; use only for page sizing)."""
        return (self.seconds or 31 * 86400) * 1000

    def floor(self, ts: pd.Timestamp) -> pd.Timestamp:
        """Open time of the bar that contains ``ts``."""
        ts = to_utc(ts)
        if self.name == "1M":
            return ts.normalize().replace(day=1)
        if self.name == "1w":
            day = ts.normalize()
            return day - pd.Timedelta(days=day.weekday())
        return ts.floor(pd.Timedelta(seconds=self.seconds))

    def ceil(self, ts: pd.Timestamp) -> pd.Timestamp:
        """First bar open time at or after ``ts``."""
        ts = to_utc(ts)
        floored = self.floor(ts)
        return floored if floored == ts else floored + self.delta

    def open_times(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
        """Every bar open time in ``[start, end)``."""
        first = self.ceil(start)
        end = to_utc(end)
        if first >= end:
            return pd.DatetimeIndex([], tz="UTC").as_unit("us")
        index = pd.date_range(first, end, freq=self.pandas_freq, inclusive="left")
        return index.as_unit("us")


_TABLE = [
    Timeframe("1m", "1", "1m", "1min", 60),
    Timeframe("3m", "3", "3m", "3min", 180),
    Timeframe("5m", "5", "5m", "5min", 300),
    Timeframe("15m", "15", "15m", "15min", 900),
    Timeframe("30m", "30", "30m", "30min", 1800),
    Timeframe("1h", "60", "1h", "1h", 3600),
    Timeframe("2h", "120", "2h", "2h", 7200),
    Timeframe("4h", "240", "4h", "4h", 14400),
    Timeframe("6h", "360", "6h", "6h", 21600),
    Timeframe("8h", None, "8h", "8h", 28800),
    Timeframe("12h", "720", "12h", "12h", 43200),
    Timeframe("1d", "D", "1d", "1D", 86400),
    Timeframe("3d", None, "3d", "3D", 259200),
    Timeframe("1w", "W", "1w", "W-MON", 604800),
    Timeframe("1M", "M", "1M", "MS", None),
]
_BY_SPELLING: dict[str, Timeframe] = {}
for _tf in _TABLE:
    for _spelling in {_tf.name, _tf.bybit, _tf.binance} - {None}:
        _BY_SPELLING[_spelling] = _tf
_BY_SPELLING.update({"1D": _BY_SPELLING["1d"], "1W": _BY_SPELLING["1w"], "60m": _BY_SPELLING["1h"]})

TIMEFRAMES: tuple[Timeframe, ...] = tuple(_TABLE)


def timeframe_for_step(step: pd.Timedelta) -> Timeframe | None:
    """The fixed-length timeframe whose bar lasts exactly ``step``, or None."""
    seconds = pd.Timedelta(step).total_seconds()
    return next((tf for tf in _TABLE if tf.seconds == seconds), None)


def parse_timeframe(value: str | Timeframe) -> Timeframe:
    """Accept any spelling (``60``, ``1h``, ``D``, ``1d``...) and return the canonical timeframe."""
    if isinstance(value, Timeframe):
        return value
    text = str(value).strip()
    found = _BY_SPELLING.get(text)
    if found is None:
        hint = did_you_mean(text, _BY_SPELLING, cutoff=0.6)
        names = ", ".join(tf.name for tf in _TABLE)
        raise ConfigError(f"unknown interval '{text}'{hint}; use one of {names} (Bybit codes like 60 or D work too)")
    return found


def to_utc(value) -> pd.Timestamp:
    """A timestamp in UTC; naive input is taken to be UTC already."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def to_ms(value) -> int:
    """Milliseconds since the epoch, the unit both exchanges speak."""
    return int(to_utc(value).value // 1_000_000)


def from_ms(ms: int) -> pd.Timestamp:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC")


def bars_per_day(times, timeframe: str | Timeframe | None = None) -> int:
    """How many bars make a UTC day for intraday bars that divide it (24 for 1h, 96 for 15m); 0 otherwise.
    The bar length is ``timeframe``, or the most common step between ``times``."""
    if timeframe is not None:
        step = parse_timeframe(timeframe).delta
    else:
        index = pd.DatetimeIndex(times)
        if len(index) < 2:
            return 0
        step = pd.Series(index[1:] - index[:-1]).mode()[0]
    seconds = int(step.total_seconds())
    return 86_400 // seconds if 0 < seconds < 86_400 and 86_400 % seconds == 0 else 0


def position_in_day(times, per_day: int) -> np.ndarray:
    """Each time's bar index since its UTC midnight, for ``per_day`` bars a day."""
    index = pd.DatetimeIndex(times)
    index = index.tz_convert("UTC") if index.tz is not None else index
    since_midnight = (index - index.normalize()).total_seconds().to_numpy()
    return (since_midnight // (86_400 // per_day)).astype(np.int64)

