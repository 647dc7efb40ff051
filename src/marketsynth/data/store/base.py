"""The Store interface: one contract, two backends (an embedded DuckDB file, PostgreSQL/TimescaleDB).

Rows are unique per (exchange, symbol, timeframe, time). ``write_bars`` is an idempotent upsert inside one
transaction: it either stores the whole frame or nothing. Besides candles a store keeps *known gaps* — ranges
the exchange was asked for and truly lacks, with when and why each was recorded — so re-runs do not ask again
and nothing is ever invented; ``forget_missing`` lets a re-check ask again. It also keeps perpetual funding
rates per (exchange, symbol, funding time), with the range already synced from the exchange.

Schema version 2 added ``known_gaps.reason`` and the ``funding_rates``/``funding_sync`` tables; opening an older
store for writing migrates it in place (old gaps get ``OLD_GAP_REASON``); read-only opens read it as it is.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import pandas as pd

from marketsynth.data.bars import as_bars
from marketsynth.data.funding import as_funding, empty_funding
from marketsynth.data.store.trading import TradingTables
from marketsynth.timeframes import TIMEFRAMES, Timeframe, parse_timeframe, to_utc

SCHEMA_VERSION = 2
COVERAGE_COLUMNS = ["exchange", "symbol", "timeframe", "first", "last", "rows"]
KNOWN_GAP_COLUMNS = ["exchange", "symbol", "timeframe", "start", "end", "recorded_at", "reason"]
FUNDING_COVERAGE_COLUMNS = ["exchange", "symbol", "first", "last", "rows"]
#: The reason of known gaps recorded before schema version 2, which kept none.
OLD_GAP_REASON = "recorded before marketsynth kept reasons"
DEFAULT_GAP_REASON = "the exchange answered without these candles"


@dataclass(frozen=True)
class Gap:
    """Missing bars: open times ``start`` (inclusive) to ``end`` (exclusive)."""

    start: pd.Timestamp
    end: pd.Timestamp
    bars: int


def find_gaps(
    times: pd.DatetimeIndex,
    timeframe: Timeframe | str,
    start=None,
    end=None,
    known: list[tuple[pd.Timestamp, pd.Timestamp]] = (),
) -> list[Gap]:
    """Runs of expected bar open times absent from ``times`` within [start, end).

    Without ``start``/``end`` only the inside of the series counts (from its first to its last bar). Bars inside
    the ``known`` missing ranges count as accounted for.
    """
    tf = parse_timeframe(timeframe)
    times = pd.DatetimeIndex(times)
    if len(times) == 0 and (start is None or end is None):
        return []
    lo = to_utc(start) if start is not None else times.min()
    hi = to_utc(end) if end is not None else times.max() + tf.delta
    expected = tf.open_times(lo, hi)
    accounted = expected.isin(times.tz_convert("UTC").as_unit("us")) if len(times) else np.zeros(len(expected), bool)
    for known_lo, known_hi in known:
        accounted |= (expected >= known_lo) & (expected < known_hi)
    missing = np.flatnonzero(~accounted)
    if missing.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(missing) != 1)
    firsts = np.concatenate([[missing[0]], missing[breaks + 1]])
    lasts = np.concatenate([missing[breaks], [missing[-1]]])
    return [Gap(expected[a], expected[b] + tf.delta, int(b - a + 1)) for a, b in zip(firsts, lasts, strict=True)]


class Store(TradingTables, ABC):
    """Where candles live (and the trading service's tables, ``store.trading``). Library code takes a Store;
    the CLI opens one with ``open_store``."""

    url: str

    def __init__(self) -> None:
        self._lock = threading.RLock()  # one writer at a time: fetches run in threads

    # ---- candles -------------------------------------------------------------------------------------------
    def write_bars(self, exchange: str, symbol: str, timeframe: Timeframe | str, frame: pd.DataFrame) -> int:
        """Upsert bars atomically; returns the number of rows written. Re-writing the same bars changes nothing."""
        bars = as_bars(frame)
        if bars.empty:
            return 0
        with self._lock:
            self._upsert(exchange.lower(), symbol.upper(), parse_timeframe(timeframe).name, bars)
        return len(bars)

    def read_bars(self, exchange: str, symbol: str, timeframe: Timeframe | str, start=None, end=None) -> pd.DataFrame:
        """Bars with open time in [start, end), ascending."""
        with self._lock:
            frame = self._select(
                exchange.lower(), symbol.upper(), parse_timeframe(timeframe).name, _opt_utc(start), _opt_utc(end)
            )
        return as_bars(frame, source="store")

    def read_times(
        self, exchange: str, symbol: str, timeframe: Timeframe | str, start=None, end=None
    ) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(self.read_bars(exchange, symbol, timeframe, start, end)["time"])

    def coverage(self) -> pd.DataFrame:
        """One row per stored series: exchange, symbol, timeframe, first, last, rows."""
        with self._lock:
            frame = self._coverage()
        if frame.empty:
            return pd.DataFrame(columns=COVERAGE_COLUMNS)
        for column in ("first", "last"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        frame["rows"] = frame["rows"].astype("int64")
        return frame.sort_values(["exchange", "symbol", "timeframe"]).reset_index(drop=True)

    def exchanges_for(self, symbol: str, timeframe: Timeframe | str) -> list[str]:
        """Exchanges that hold this symbol × timeframe."""
        cov = self.coverage()
        rows = cov[(cov.symbol == symbol.upper()) & (cov.timeframe == parse_timeframe(timeframe).name)]
        return sorted(rows.exchange.unique())

    # ---- gaps ----------------------------------------------------------------------------------------------
    def record_missing(self, exchange: str, symbol: str, timeframe: Timeframe | str, ranges, *,
                       reason: str = DEFAULT_GAP_REASON) -> None:
        """Remember ranges [start, end) the exchange truly lacks, so re-runs neither re-ask nor invent them.

        Each is stamped with the time of recording and ``reason`` (why it is believed missing)."""
        ranges = [(to_utc(lo), to_utc(hi)) for lo, hi in ranges if to_utc(lo) < to_utc(hi)]
        if ranges:
            with self._lock:
                self._insert_missing(exchange.lower(), symbol.upper(), parse_timeframe(timeframe).name, ranges,
                                     pd.Timestamp.now(tz="UTC"), str(reason))

    def known_missing(
        self, exchange: str, symbol: str, timeframe: Timeframe | str
    ) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        """The known gaps of one series as sorted ``(start, end)`` pairs."""
        gaps = self.known_gaps(exchange, symbol, timeframe)
        return sorted(zip(gaps["start"], gaps["end"], strict=True))

    def known_gaps(self, exchange: str | None = None, symbol: str | None = None,
                   timeframe: Timeframe | str | None = None) -> pd.DataFrame:
        """Known gaps with when and why they were recorded: columns exchange, symbol, timeframe, start, end,
        recorded_at, reason (times UTC), sorted; ``None`` filters nothing."""
        with self._lock:
            rows = self._select_known_gaps(
                exchange.lower() if exchange else None,
                symbol.upper() if symbol else None,
                parse_timeframe(timeframe).name if timeframe else None,
            )
        frame = pd.DataFrame.from_records(list(rows), columns=KNOWN_GAP_COLUMNS)
        for column in ("start", "end", "recorded_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[us, UTC]")
        frame["reason"] = frame["reason"].astype(object)
        return frame.sort_values(["exchange", "symbol", "timeframe", "start"]).reset_index(drop=True)

    def forget_missing(self, exchange: str, symbol: str, timeframe: Timeframe | str, start=None,
                       end=None) -> list[Gap]:
        """Forget the known gaps of one series inside [start, end) (default: all), so the next sync asks the
        exchange again; a known gap reaching outside the range keeps its outside part. One transaction.

        Returns the forgotten ranges (with their bar counts)."""
        tf = parse_timeframe(timeframe)
        lo, hi = _opt_utc(start), _opt_utc(end)
        remove, keep, forgotten = [], [], []
        with self._lock:
            gaps = self.known_gaps(exchange, symbol, tf)
            for row in gaps.itertuples(index=False):
                a = row.start if lo is None else max(row.start, lo)
                b = row.end if hi is None else min(row.end, hi)
                if a >= b:
                    continue
                remove.append(row.start)
                forgotten.append(Gap(a, b, len(tf.open_times(a, b))))
                keep += [(row.start, a, row.recorded_at, row.reason)] if row.start < a else []
                keep += [(b, row.end, row.recorded_at, row.reason)] if b < row.end else []
            if remove:
                self._replace_missing(exchange.lower(), symbol.upper(), tf.name, remove, keep)
        return forgotten

    def gaps(
        self,
        exchange: str,
        symbol: str,
        timeframe: Timeframe | str,
        start=None,
        end=None,
        *,
        include_known: bool = False,
    ) -> list[Gap]:
        """Missing bars inside [start, end) (default: between the first and last stored bar).

        Known gaps (the exchange lacks them) are left out unless ``include_known``.
        """
        times = self.read_times(exchange, symbol, timeframe, start, end)
        known = [] if include_known else self.known_missing(exchange, symbol, timeframe)
        return find_gaps(times, timeframe, start, end, known)

    # ---- sync state ----------------------------------------------------------------------------------------
    def mark_synced(self, exchange: str, symbol: str, timeframe: Timeframe | str, start, end) -> None:
        """Record that [start, end) was requested from the exchange and is now stored or known missing."""
        with self._lock:
            self._upsert_sync_state(
                exchange.lower(),
                symbol.upper(),
                parse_timeframe(timeframe).name,
                to_utc(start),
                to_utc(end),
                pd.Timestamp.now(tz="UTC"),
            )

    def sync_state(self) -> pd.DataFrame:
        """One row per synced series: exchange, symbol, timeframe, synced_start, synced_end, synced_at."""
        with self._lock:
            frame = self._select_sync_state()
        for column in ("synced_start", "synced_end", "synced_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame

    # ---- funding rates ---------------------------------------------------------------------------------------
    def write_funding(self, exchange: str, symbol: str, frame: pd.DataFrame) -> int:
        """Upsert funding rates (a frame with time, rate) atomically; returns the rows written. Idempotent."""
        rates = as_funding(frame)
        if rates.empty:
            return 0
        with self._lock:
            self._upsert_funding(exchange.lower(), symbol.upper(), rates)
        return len(rates)

    def read_funding(self, exchange: str, symbol: str, start=None, end=None) -> pd.DataFrame:
        """Funding rates with funding time in [start, end), ascending (a funding frame)."""
        with self._lock:
            frame = self._select_funding(exchange.lower(), symbol.upper(), _opt_utc(start), _opt_utc(end))
        return as_funding(frame, source="store") if len(frame) else empty_funding()

    def funding_coverage(self) -> pd.DataFrame:
        """One row per stored funding series: exchange, symbol, first, last, rows."""
        with self._lock:
            frame = self._funding_coverage()
        if frame.empty:
            return pd.DataFrame(columns=FUNDING_COVERAGE_COLUMNS)
        for column in ("first", "last"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        frame["rows"] = frame["rows"].astype("int64")
        return frame.sort_values(["exchange", "symbol"]).reset_index(drop=True)

    def mark_funding_synced(self, exchange: str, symbol: str, start, end) -> None:
        """Record that funding rates in [start, end) were asked for and are stored (widens the synced range;
        callers keep it contiguous)."""
        with self._lock:
            self._upsert_funding_sync(exchange.lower(), symbol.upper(), to_utc(start), to_utc(end),
                                      pd.Timestamp.now(tz="UTC"))

    def funding_synced(self, exchange: str, symbol: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """The range of funding times already synced for exchange/symbol, None when never synced."""
        with self._lock:
            row = self._select_funding_sync(exchange.lower(), symbol.upper())
        return None if row is None else (to_utc(row[0]), to_utc(row[1]))

    # ---- life cycle ----------------------------------------------------------------------------------------
    def close(self) -> None:  # noqa: B027 - backends without resources need nothing
        """Release connections."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- what a backend implements -------------------------------------------------------------------------
    @abstractmethod
    def _upsert(self, exchange: str, symbol: str, timeframe: str, bars: pd.DataFrame) -> None:
        """Insert or replace the rows in one transaction (all or nothing)."""

    @abstractmethod
    def _select(self, exchange: str, symbol: str, timeframe: str, start, end) -> pd.DataFrame:
        """Columns time, open, high, low, close, volume for [start, end) (None = unbounded)."""

    @abstractmethod
    def _coverage(self) -> pd.DataFrame:
        """Columns exchange, symbol, timeframe, first, last, rows."""

    @abstractmethod
    def _insert_missing(self, exchange: str, symbol: str, timeframe: str, ranges, at, reason: str) -> None:
        """Upsert known gaps keyed by start: a gap starting where one is known widens it and renews its stamp."""

    @abstractmethod
    def _select_known_gaps(self, exchange: str | None, symbol: str | None, timeframe: str | None) -> list[tuple]:
        """Rows (exchange, symbol, timeframe, start, end, recorded_at, reason), filtered where not None."""

    @abstractmethod
    def _replace_missing(self, exchange: str, symbol: str, timeframe: str, remove_starts, add_rows) -> None:
        """In one transaction: delete the gaps starting at ``remove_starts``, insert ``add_rows``
        (start, end, recorded_at, reason)."""

    @abstractmethod
    def _upsert_funding(self, exchange: str, symbol: str, rates: pd.DataFrame) -> None:
        """Insert or replace funding rows (time, rate) in one transaction."""

    @abstractmethod
    def _select_funding(self, exchange: str, symbol: str, start, end) -> pd.DataFrame:
        """Columns time, rate for [start, end) (None = unbounded)."""

    @abstractmethod
    def _funding_coverage(self) -> pd.DataFrame:
        """Columns exchange, symbol, first, last, rows."""

    @abstractmethod
    def _upsert_funding_sync(self, exchange: str, symbol: str, start, end, at) -> None:
        """Widen the synced funding range of exchange/symbol to include [start, end)."""

    @abstractmethod
    def _select_funding_sync(self, exchange: str, symbol: str) -> tuple | None:
        """(synced_start, synced_end) or None."""

    @abstractmethod
    def _upsert_sync_state(self, exchange: str, symbol: str, timeframe: str, start, end, at) -> None:
        """Widen the synced range of a series to include [start, end) (min of starts, max of ends)."""

    @abstractmethod
    def _select_sync_state(self) -> pd.DataFrame:
        """Columns exchange, symbol, timeframe, synced_start, synced_end, synced_at."""


def _opt_utc(value):
    return None if value is None else to_utc(value)


TIMEFRAME_ROWS = [(tf.name, tf.seconds, tf.pandas_freq) for tf in TIMEFRAMES]
