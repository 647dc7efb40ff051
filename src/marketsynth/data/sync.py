"""Incremental, idempotent backfill: fetch only what the store lacks, store page by page, record true gaps.

For a requested range [start, end) the plan is every run of bars that is neither stored nor known to be missing:
before the first stored candle, after the last, and inside gaps. Each page is upserted as it arrives (one
transaction each), so an interrupted fetch keeps what it got and a re-run resumes. Bars the exchange does not
return for a closed period are recorded as *known gaps* and never invented. The still-open candle is never
requested: the range ends at the open time of the current bar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from marketsynth.data.exchanges import ExchangeSource
from marketsynth.data.store import Gap, Store, find_gaps
from marketsynth.data.validate import drop_unusable
from marketsynth.errors import ConfigError
from marketsynth.timeframes import Timeframe, parse_timeframe, to_utc


@dataclass
class SyncResult:
    exchange: str
    symbol: str
    timeframe: str
    start: pd.Timestamp
    end: pd.Timestamp
    planned_bars: int = 0
    stored_bars: int = 0
    missing_bars: int = 0  # asked for, not returned: recorded as known gaps
    ranges: list[Gap] = field(default_factory=list)


def plan_sync(store: Store, exchange: str, symbol: str, timeframe: Timeframe | str, start, end,
              *, now: pd.Timestamp | None = None) -> tuple[pd.Timestamp, pd.Timestamp, list[Gap]]:
    """The runs of bars to request: [start, end) clipped to closed bars, minus what is stored or known missing."""
    tf = parse_timeframe(timeframe)
    now = to_utc(now) if now is not None else pd.Timestamp.now(tz="UTC")
    start, end = to_utc(start), to_utc(end)
    if start >= end:
        raise ConfigError(f"start {start:%Y-%m-%d %H:%M} is not before end {end:%Y-%m-%d %H:%M}; swap them")
    end = min(end, tf.floor(now))  # the bar containing `now` is still open
    if start >= end:
        return start, end, []
    return start, end, store.gaps(exchange, symbol, tf, start, end)


def sync_series(store: Store, source: ExchangeSource, symbol: str, timeframe: Timeframe | str, start, end,
                *, now: pd.Timestamp | None = None, on_bars: Callable[[int], None] | None = None,
                on_plan: Callable[[int], None] | None = None) -> SyncResult:
    """Bring one symbol × timeframe up to date over [start, end).

    ``on_plan(total_bars)`` is called once with the number of bars to fetch, ``on_bars(n)`` after each page.
    """
    tf = parse_timeframe(timeframe)
    symbol = symbol.upper()
    now = to_utc(now) if now is not None else pd.Timestamp.now(tz="UTC")
    start, end, plan = plan_sync(store, source.name, symbol, tf, start, end, now=now)
    # The newest closed bar may not be published yet; only older absences are recorded as permanent.
    settled = tf.floor(now) - tf.delta
    result = SyncResult(source.name, symbol, tf.name, start, end, planned_bars=sum(g.bars for g in plan), ranges=plan)
    if on_plan:
        on_plan(result.planned_bars)
    for gap in plan:
        received: list[pd.DatetimeIndex] = []
        for page in source.fetch_bars(symbol, tf, gap.start, gap.end, now=now):
            page = drop_unusable(page, source=f"{source.name} {symbol} {tf.name}")
            result.stored_bars += store.write_bars(source.name, symbol, tf, page)
            received.append(pd.DatetimeIndex(page["time"]))
            if on_bars:
                on_bars(len(page))
        lacking = _absent_runs(gap, received, tf, settled)
        store.record_missing(source.name, symbol, tf, [(g.start, g.end) for g in lacking])
        result.missing_bars += sum(g.bars for g in lacking)
        if on_bars and lacking:
            on_bars(sum(g.bars for g in lacking))
    store.mark_synced(source.name, symbol, tf, start, end)
    return result


def _absent_runs(gap: Gap, received: list[pd.DatetimeIndex], tf: Timeframe, settled: pd.Timestamp) -> list[Gap]:
    """Parts of a requested run the exchange did not return, up to the settled time."""
    end = min(gap.end, settled)
    if gap.start >= end:
        return []
    got = received[0].append(received[1:]) if received else pd.DatetimeIndex([], tz="UTC")
    return find_gaps(got, tf, gap.start, end)
