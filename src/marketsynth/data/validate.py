"""Candle sanity: duplicates, gaps and OHLC violations — reported by ``data check``, enforced before storing."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pandas as pd

from marketsynth.data.bars import BAR_COLUMNS, PRICE_COLUMNS, as_bars
from marketsynth.data.store.base import find_gaps
from marketsynth.timeframes import Timeframe, parse_timeframe


@dataclass(frozen=True)
class Violations:
    """Rows breaking candle rules. ``high_low`` counts high < max(open, close) or low > min(open, close)."""

    high_below_body: int
    low_above_body: int
    nonpositive_price: int
    negative_volume: int
    missing_values: int

    @property
    def total(self) -> int:
        return (self.high_below_body + self.low_above_body + self.nonpositive_price
                + self.negative_volume + self.missing_values)


@dataclass(frozen=True)
class SeriesReport:
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    rows: int
    gaps: int  # gaps the exchange might still fill
    gap_bars: int
    largest_gap_bars: int
    known_gap_bars: int  # bars the exchange was asked for and truly lacks
    duplicates: int
    violations: Violations


def find_violations(frame: pd.DataFrame) -> pd.DataFrame:
    """Boolean frame, one column per rule, True where a row breaks it."""
    body_high = frame[["open", "close"]].max(axis=1)
    body_low = frame[["open", "close"]].min(axis=1)
    return pd.DataFrame({
        "high_below_body": frame["high"] < body_high,
        "low_above_body": frame["low"] > body_low,
        "nonpositive_price": (frame[PRICE_COLUMNS] <= 0).any(axis=1),
        "negative_volume": frame["volume"] < 0,
        "missing_values": frame[BAR_COLUMNS[1:]].isna().any(axis=1),
    })


def count_violations(frame: pd.DataFrame) -> Violations:
    flags = find_violations(frame)
    return Violations(**{name: int(flags[name].sum()) for name in flags.columns})


def check_series(frame: pd.DataFrame, timeframe: Timeframe | str,
                 known: list[tuple[pd.Timestamp, pd.Timestamp]] = ()) -> SeriesReport:
    """Everything ``data check`` reports for one symbol × timeframe. ``frame`` may hold duplicate times."""
    tf = parse_timeframe(timeframe)
    times = pd.to_datetime(frame["time"], utc=True) if len(frame) else pd.Series([], dtype="datetime64[us, UTC]")
    duplicates = int(times.duplicated().sum())
    bars = as_bars(frame) if len(frame) else frame
    gaps = find_gaps(pd.DatetimeIndex(bars["time"]), tf) if len(bars) else []
    open_gaps = find_gaps(pd.DatetimeIndex(bars["time"]), tf, known=known) if len(bars) else []
    return SeriesReport(
        first=bars["time"].iloc[0] if len(bars) else None,
        last=bars["time"].iloc[-1] if len(bars) else None,
        rows=len(frame),
        gaps=len(open_gaps),
        gap_bars=sum(g.bars for g in open_gaps),
        largest_gap_bars=max((g.bars for g in gaps), default=0),
        known_gap_bars=sum(g.bars for g in gaps) - sum(g.bars for g in open_gaps),
        duplicates=duplicates,
        violations=count_violations(bars) if len(bars) else Violations(0, 0, 0, 0, 0),
    )


def drop_unusable(frame: pd.DataFrame, *, source: str) -> pd.DataFrame:
    """Remove rows no model can use (missing values, price ≤ 0, volume < 0) with a warning saying how many.

    Wick inconsistencies (high below the body...) are kept as the exchange reported them and shown by
    ``data check``; the representation refuses them at training time with the rows named.
    """
    flags = find_violations(frame)
    bad = flags["nonpositive_price"] | flags["negative_volume"] | flags["missing_values"]
    if bad.any():
        first = frame.loc[bad, "time"].iloc[0]
        warnings.warn(f"{source}: dropped {int(bad.sum())} row(s) with missing values, price <= 0 or volume < 0 "
                      f"(first at {first}); they were not stored", stacklevel=2)
        frame = frame.loc[~bad].reset_index(drop=True)
    return frame
