"""What the fake exchange serves: candles per symbol and interval at the market clock, missing bars, faults, and
a deterministic funding-rate series derived from the candles (``FakeMarket.funding``).

Kept apart from the HTTP side (``fake_exchange.py``) so each can be read on its own.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from marketsynth.data.bars import as_bars, empty_bars
from marketsynth.errors import DataError
from marketsynth.timeframes import TIMEFRAMES, Timeframe, parse_timeframe, to_ms, to_utc

FAULT_KINDS = (
    "429",
    "418",
    "403",
    "bybit_10006",
    "500",
    "502",
    "503",
    "timeout",
    "disconnect",
    "malformed",
    "empty",
    "exhausted",
)
OHLCV = ["open", "high", "low", "close", "volume"]
FUNDING_INTERVAL = pd.Timedelta(hours=8)  # 00:00, 08:00, 16:00 UTC
BASE_FUNDING_RATE = 0.0001
MAX_FUNDING_RATE = 0.0075


@dataclass
class Fault:
    kind: str
    times: int | None  # uses left; None = until cleared
    retry_after: float | None = None
    delay: float = 2.0
    reset: float = 1.0


class Faults:
    """Faults for the next kline requests, first added first used; thread-safe, settable while running."""

    def __init__(self):
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()

    def add(
        self,
        kind: str,
        times: int | None = 1,
        *,
        retry_after: float | None = None,
        delay: float = 2.0,
        reset: float = 1.0,
    ) -> None:
        """Serve ``kind`` to the next ``times`` kline requests (None: every one until ``clear``).

        ``retry_after``: seconds for the ``Retry-After`` header (429 defaults to 1, 418 to 2); ``delay``: how
        long ``timeout`` stalls; ``reset``: seconds until the window resets for ``bybit_10006``/``exhausted``.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; use one of {', '.join(FAULT_KINDS)}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for every request)")
        with self._lock:
            self._queue.append(Fault(kind, times, retry_after, delay, reset))

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def take(self) -> Fault | None:
        """The fault for the request being served now, if any (uses one of its ``times``)."""
        with self._lock:
            if not self._queue:
                return None
            fault = self._queue[0]
            if fault.times is not None:
                fault.times -= 1
                if fault.times == 0:
                    self._queue.popleft()
            return fault

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)


class MissingBars:
    """Base bars the exchange lacks: ``[start, end)`` ranges per symbol."""

    def __init__(self):
        self._lock = threading.Lock()
        self._ranges: dict[str, list[tuple[int, int]]] = {}
        self.version = 0

    def add(self, symbol: str, start, end) -> None:
        with self._lock:
            self._ranges.setdefault(symbol.upper(), []).append((to_ms(start), to_ms(end)))
            self.version += 1

    def clear(self) -> None:
        with self._lock:
            self._ranges.clear()
            self.version += 1

    def mask(self, symbol: str, times_ms: np.ndarray) -> np.ndarray:
        """True where a bar opening at that time is missing."""
        missing = np.zeros(len(times_ms), dtype=bool)
        with self._lock:
            for start, end in self._ranges.get(symbol.upper(), []):
                missing |= (times_ms >= start) & (times_ms < end)
        return missing


@dataclass
class Series:
    """Candles of one symbol and interval as served: open and close times (ms) and o, h, l, c, v rows."""

    times: np.ndarray
    close_times: np.ndarray
    values: np.ndarray  # shape (n, 5)

    def select(self, start: int | None, end: int | None, limit: int, *, newest: bool) -> list[tuple]:
        """``(open_ms, close_ms, [o, h, l, c, v])`` for opens in [start, end], at most ``limit``, ascending;
        the newest ``limit`` when ``newest`` (Bybit), else the oldest (Binance with ``startTime``)."""
        lo = 0 if start is None else int(np.searchsorted(self.times, start, side="left"))
        hi = len(self.times) if end is None else int(np.searchsorted(self.times, end, side="right"))
        if hi - lo > limit:
            lo, hi = (hi - limit, hi) if newest else (lo, lo + limit)
        opens, closes = self.times[lo:hi].tolist(), self.close_times[lo:hi].tolist()
        rows = zip(opens, closes, self.values[lo:hi].tolist(), strict=True)
        return list(rows)


@dataclass
class FundingSeries:
    """Funding events of one symbol as served: times (ms), rates and mark prices, ascending."""

    times: np.ndarray
    rates: np.ndarray
    marks: np.ndarray

    def select(self, start: int | None, end: int | None, limit: int, *, newest: bool) -> list[tuple]:
        """``(time_ms, rate, mark)`` for times in [start, end], at most ``limit``, ascending; the newest ``limit``
        when ``newest``, else the oldest."""
        lo = 0 if start is None else int(np.searchsorted(self.times, start, side="left"))
        hi = len(self.times) if end is None else int(np.searchsorted(self.times, end, side="right"))
        if hi - lo > limit:
            lo, hi = (hi - limit, hi) if newest else (lo, lo + limit)
        return list(zip(self.times[lo:hi].tolist(), self.rates[lo:hi].tolist(), self.marks[lo:hi].tolist(),
                        strict=True))


class FakeMarket:
    """Base bars per symbol, the bars the exchange lacks, and the market clock ``now``.

    The candle containing ``now`` is the open one: built from the base bars up to ``now`` (so a daily candle
    is partial), or flat at the last close when the data ended before it. Later candles do not exist yet.
    """

    def __init__(self, data: dict[str, pd.DataFrame], *, timeframe: Timeframe | str | None = None):
        self.data = {symbol.upper(): as_bars(frame, source=f"fake {symbol}") for symbol, frame in data.items()}
        self.base_timeframe = parse_timeframe(timeframe) if timeframe else _infer_timeframe(self.data)
        self.missing = MissingBars()
        last = [frame["time"].iloc[-1] for frame in self.data.values() if len(frame)]
        # Default: half way through the bar after the last one, so every bar of the data is closed.
        self.now = (max(last) + self.base_timeframe.delta * 1.5) if last else pd.Timestamp.now(tz="UTC")
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], Series] = {}
        self._cache_key: tuple = ()

    @property
    def now(self) -> pd.Timestamp:
        return self._now

    @now.setter
    def now(self, value) -> None:
        self._now = to_utc(value)

    def serves(self, timeframe: Timeframe) -> bool:
        """Whether ``timeframe`` can be built from the base bars (nothing finer than them)."""
        base = self.base_timeframe
        return timeframe.seconds is None or base.seconds is None or timeframe.seconds >= base.seconds

    def candles(self, symbol: str, timeframe: Timeframe | str) -> pd.DataFrame:
        """What the exchange serves now, as a bars frame: closed candles plus the open one."""
        series = self.series(symbol.upper(), parse_timeframe(timeframe))
        frame = pd.DataFrame(series.values.reshape(-1, 5), columns=OHLCV)
        frame.insert(0, "time", series.times)
        return as_bars(frame)

    def series(self, symbol: str, tf: Timeframe) -> Series:
        now = self._now
        key = (now, self.missing.version)
        with self._lock:
            if self._cache_key != key:
                self._cache, self._cache_key = {}, key
            cached = self._cache.get((symbol, tf.name))
        if cached is not None:
            return cached
        series = self._build(symbol, tf, now)
        with self._lock:
            if self._cache_key == key:
                self._cache[(symbol, tf.name)] = series
        return series

    def funding(self, symbol: str) -> FundingSeries:
        """The funding rates settled by ``now``: every 8 h (00/08/16 UTC) after the first base bar up to the end of
        the last, ``clip(0.0001 + 0.05 × ln(close/open of the 8 h before), ±0.0075)`` rounded to 8 decimals.

        Deterministic, derived from all base bars (``missing`` bars are a kline outage, not a funding one)."""
        symbol = symbol.upper()
        key = (self._now, "funding")
        with self._lock:
            if self._cache_key != (self._now, self.missing.version):
                self._cache, self._cache_key = {}, (self._now, self.missing.version)
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        series = funding_series(self.data.get(symbol, empty_bars()), self.base_timeframe, self._now)
        with self._lock:
            self._cache[key] = series
        return series

    def _build(self, symbol: str, tf: Timeframe, now: pd.Timestamp) -> Series:
        base = self.data.get(symbol, empty_bars())
        present = ~self.missing.mask(symbol, epoch_ms(base["time"])) & (base["time"] <= now).to_numpy()
        base = base.loc[present]
        bars = base if tf == self.base_timeframe else resample_bars(base, tf)
        if len(bars) and bars["time"].iloc[-1] < tf.floor(now):  # every candle closed: add the open one
            last_close = float(bars["close"].iloc[-1])
            flat = {column: [last_close] for column in OHLCV[:4]}
            open_row = pd.DataFrame({"time": [tf.floor(now)], **flat, "volume": [0.0]})
            bars = as_bars(pd.concat([bars, open_row], ignore_index=True))
        opens = epoch_ms(bars["time"])
        if tf.seconds:
            closes = opens + tf.seconds * 1000 - 1
        else:
            closes = np.array([to_ms(t + tf.delta) - 1 for t in bars["time"]], dtype="int64")
        return Series(opens, closes, bars[OHLCV].to_numpy(dtype="float64"))


def funding_series(bars: pd.DataFrame, base: Timeframe, now: pd.Timestamp) -> FundingSeries:
    """The fake's funding events for one symbol's base bars (see ``FakeMarket.funding``)."""
    if bars.empty:
        empty = np.array([], dtype="int64")
        return FundingSeries(empty, np.array([], dtype="float64"), np.array([], dtype="float64"))
    step = FUNDING_INTERVAL
    first, last_end = bars["time"].iloc[0], bars["time"].iloc[-1] + base.delta
    times = pd.date_range(first.floor(step) + step, min(last_end, now).floor(step), freq=step)
    bucket_end = bars["time"].dt.floor(step) + step
    grouped = bars.groupby(bucket_end.rename("end"), sort=True).agg(open=("open", "first"), close=("close", "last"))
    grouped = grouped.reindex(times)
    moves = np.log(grouped["close"].to_numpy() / grouped["open"].to_numpy())
    rates = np.round(np.clip(BASE_FUNDING_RATE + 0.05 * np.nan_to_num(moves), -MAX_FUNDING_RATE, MAX_FUNDING_RATE), 8)
    marks = grouped["close"].ffill().bfill().to_numpy()
    return FundingSeries(times.as_unit("ms").asi8.astype("int64"), rates.astype("float64"), marks)


def resample_bars(frame: pd.DataFrame, timeframe: Timeframe | str) -> pd.DataFrame:
    """OHLCV of ``frame`` over ``timeframe`` (first open, max high, min low, last close, summed volume).

    Buckets open where ``Timeframe.floor`` puts them: weeks on Monday, months on the 1st, others on multiples
    of their length since the epoch.
    """
    tf = parse_timeframe(timeframe)
    if frame.empty:
        return empty_bars()
    times = frame["time"]
    if tf.name in ("1w", "1M"):
        day = times.dt.normalize()
        offset = day.dt.day_of_week if tf.name == "1w" else day.dt.day - 1
        keys = day - pd.to_timedelta(offset, unit="D")
    else:
        keys = times.dt.floor(pd.Timedelta(seconds=tf.seconds))
    grouped = frame.groupby(keys.rename("bucket"), sort=True)
    out = grouped.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
    )
    return as_bars(out.reset_index().rename(columns={"bucket": "time"}))


def read_kline_csv(path: str | Path) -> pd.DataFrame:
    """A Binance kline export (with or without a header row) as a bars frame."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"kline CSV {path} does not exist")
    frame = pd.read_csv(path)
    if str(frame.columns[0]).lstrip("-").isdigit():  # no header row
        frame = pd.read_csv(path, header=None)
        frame = frame.rename(columns=dict(enumerate(["time", *OHLCV])))
    frame = frame.rename(columns={"open_time": "time", "timestamp": "time"})
    return as_bars(frame, source=str(path))


def epoch_ms(times: pd.Series) -> np.ndarray:
    return times.dt.as_unit("ms").astype("int64").to_numpy()


def _infer_timeframe(data: dict[str, pd.DataFrame]) -> Timeframe:
    for frame in data.values():
        steps = frame["time"].diff().dropna()
        steps = steps[steps > pd.Timedelta(0)]
        if len(steps):
            seconds = int(steps.min().total_seconds())
            for tf in TIMEFRAMES:
                if tf.seconds == seconds:
                    return tf
            raise DataError(f"fake exchange data has {seconds} s bars; pass timeframe= explicitly")
    return parse_timeframe("1h")
