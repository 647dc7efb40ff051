"""Incremental, idempotent backfill: fetch only what the store lacks, store page by page, record true gaps.

For a requested range [start, end) the plan is every run of bars that is neither stored nor known to be missing:
before the first stored candle, after the last, and inside gaps. Each page is upserted as it arrives (one
transaction each), so an interrupted fetch keeps what it got and a re-run resumes. The still-open candle is never
requested: the range ends at the open time of the current bar.

A *known gap* is recorded only for a closed period the exchange answered without candles (``KlinePage``): a
candle the exchange returned is never recorded as missing, whatever the clocks say, and a stretch it was not
asked about, or that has not closed on its clock, stays open for the next run. Each gap carries when and why it
was recorded. ``recheck_gaps=True`` forgets the known gaps inside the range first, so the exchange is asked again
and whatever it now returns is stored.

Funding rates sync the same way (``sync_funding``): only the part of [start, end) outside the range already
synced is asked for, page by page.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from marketsynth.data.exchanges import ExchangeSource
from marketsynth.data.exchanges.base import KlinePage
from marketsynth.data.store import Gap, Store, find_gaps
from marketsynth.data.validate import drop_unusable
from marketsynth.errors import ConfigError
from marketsynth.progress import Progress, or_silent
from marketsynth.timeframes import Timeframe, parse_timeframe, to_utc

#: Funding rates are published at the funding time; an answer this soon after it may not hold it yet.
FUNDING_PUBLISH_DELAY = pd.Timedelta(minutes=5)


@dataclass
class SyncResult:
    exchange: str
    symbol: str
    timeframe: str
    start: pd.Timestamp
    end: pd.Timestamp
    planned_bars: int = 0
    stored_bars: int = 0
    missing_bars: int = 0  # asked for, answered without: recorded as known gaps
    rechecked_bars: int = 0  # known-gap bars forgotten and asked for again (recheck_gaps)
    ranges: list[Gap] = field(default_factory=list)

    @property
    def status(self) -> str:
        """One or two words for the fetch table."""
        if self.planned_bars == 0:
            return "already up to date"
        return "updated" if self.stored_bars else "nothing new"


@dataclass
class FundingResult:
    exchange: str
    symbol: str
    start: pd.Timestamp
    end: pd.Timestamp
    requested: list[tuple[pd.Timestamp, pd.Timestamp]] = field(default_factory=list)
    stored_rates: int = 0

    @property
    def status(self) -> str:
        return "already up to date" if not self.requested else "updated" if self.stored_rates else "nothing new"


def plan_sync(store: Store, exchange: str, symbol: str, timeframe: Timeframe | str, start, end,
              *, now: pd.Timestamp | None = None) -> tuple[pd.Timestamp, pd.Timestamp, list[Gap]]:
    """The runs of bars to request: [start, end) clipped to closed bars, minus what is stored or known missing."""
    tf = parse_timeframe(timeframe)
    start, end = _closed_range(tf, start, end, now)
    if start >= end:
        return start, end, []
    return start, end, store.gaps(exchange, symbol, tf, start, end)


def sync_series(store: Store, source: ExchangeSource, symbol: str, timeframe: Timeframe | str, start, end,
                *, now: pd.Timestamp | None = None, progress: Progress | None = None, stage: str = "fetch",
                recheck_gaps: bool = False) -> SyncResult:
    """Bring one symbol × timeframe up to date over [start, end).

    ``recheck_gaps`` asks the exchange again for the known gaps inside the range (and stores what comes back); they
    are forgotten first, so a re-check cut short simply asks again next time.
    ``progress`` hears of it as ``stage``: its total (the bars to fetch) once planned, then the bars as they are
    settled (stored, or recorded as missing).
    """
    progress = or_silent(progress)
    tf = parse_timeframe(timeframe)
    symbol = symbol.upper()
    now = to_utc(now) if now is not None else pd.Timestamp.now(tz="UTC")
    rechecked = 0
    if recheck_gaps:
        lo, hi = _closed_range(tf, start, end, now)
        if lo < hi:
            rechecked = sum(g.bars for g in store.forget_missing(source.name, symbol, tf, lo, hi))
    start, end, plan = plan_sync(store, source.name, symbol, tf, start, end, now=now)
    # The newest closed bar may not be published yet; only older absences are recorded as permanent.
    settled = tf.floor(now) - tf.delta
    result = SyncResult(source.name, symbol, tf.name, start, end, planned_bars=sum(g.bars for g in plan),
                        rechecked_bars=rechecked, ranges=plan)
    progress.advance(stage, 0, total=result.planned_bars)
    for gap in plan:
        lacking: list[tuple[Gap, str]] = []
        for page in source.fetch_pages(symbol, tf, gap.start, gap.end, now=now):
            bars = drop_unusable(page.bars, source=f"{source.name} {symbol} {tf.name}")
            result.stored_bars += store.write_bars(source.name, symbol, tf, bars)
            absent = _absent_runs(page, tf, settled)
            lacking += [(run, _reason(source, page)) for run in absent]
            progress.advance(stage, len(bars) + sum(run.bars for run in absent))
        for reason, ranges in _merged(lacking).items():
            store.record_missing(source.name, symbol, tf, ranges, reason=reason)
        result.missing_bars += sum(run.bars for run, _ in lacking)
    store.mark_synced(source.name, symbol, tf, start, end)
    return result


def sync_funding(store: Store, source: ExchangeSource, symbol: str, start, end, *,
                 now: pd.Timestamp | None = None, progress: Progress | None = None,
                 stage: str = "funding") -> FundingResult:
    """Bring the funding rates of one perpetual up to date over [start, end) (only what was never synced).

    The synced range stays one contiguous stretch: a request disjoint from it also fetches the stretch between.
    It ends where the clock that decided (see ``exchanges.clock``) says rates have been published.
    """
    symbol = symbol.upper()
    now = to_utc(now) if now is not None else pd.Timestamp.now(tz="UTC")
    start, end = to_utc(start), to_utc(end)
    if start >= end:
        raise ConfigError(f"start {start:%Y-%m-%d %H:%M} is not before end {end:%Y-%m-%d %H:%M}; swap them")
    end = min(end, now - FUNDING_PUBLISH_DELAY)
    result = FundingResult(source.name, symbol, start, max(start, end))
    if start >= end:
        return result
    synced = store.funding_synced(source.name, symbol)
    if synced is None:
        result.requested = [(start, end)]
    else:
        result.requested = ([(start, synced[0])] if start < synced[0] else []) + (
            [(synced[1], end)] if end > synced[1] else [])
    lo, hi = (start, end) if synced is None else (min(start, synced[0]), max(end, synced[1]))
    for piece_lo, piece_hi in result.requested:
        published = piece_hi
        for page in source.fetch_funding(symbol, piece_lo, piece_hi, now=now):
            result.stored_rates += store.write_funding(source.name, symbol, page.rates)
            published = min(published, page.clock.closed_by - FUNDING_PUBLISH_DELAY)
            or_silent(progress).advance(stage, len(page.rates))
        if published < piece_hi:  # the exchange's clock is behind: the rest is asked again next time
            hi = max(published, piece_lo) if piece_hi == hi else hi
    if hi > lo:
        store.mark_funding_synced(source.name, symbol, lo, hi)
    return result


def _closed_range(tf: Timeframe, start, end, now) -> tuple[pd.Timestamp, pd.Timestamp]:
    now = to_utc(now) if now is not None else pd.Timestamp.now(tz="UTC")
    start, end = to_utc(start), to_utc(end)
    if start >= end:
        raise ConfigError(f"start {start:%Y-%m-%d %H:%M} is not before end {end:%Y-%m-%d %H:%M}; swap them")
    return start, min(end, tf.floor(now))  # the bar containing `now` is still open


def _absent_runs(page: KlinePage, tf: Timeframe, settled: pd.Timestamp) -> list[Gap]:
    """Bars of the stretch a page covered that the exchange did not return, up to the settled time."""
    end = min(page.covered, settled)
    if page.start >= end:
        return []
    return find_gaps(page.returned, tf, page.start, end)


def _reason(source: ExchangeSource, page: KlinePage) -> str:
    clock = f"{page.clock.label}: {page.clock.closed_by:%Y-%m-%d %H:%M} UTC"
    if page.searched:
        return f"{source.name} has no candles before its next one (first-candle search; {clock})"
    return f"{source.name} answered without these candles ({clock})"


def _merged(lacking: list[tuple[Gap, str]]) -> dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]:
    """Adjacent runs joined (the first one's reason wins), grouped by reason."""
    joined: list[list] = []
    for run, reason in sorted(lacking, key=lambda item: item[0].start):
        if joined and joined[-1][1] == run.start:
            joined[-1][1] = run.end
        else:
            joined.append([run.start, run.end, reason])
    grouped: dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]] = {}
    for lo, hi, reason in joined:
        grouped.setdefault(reason, []).append((lo, hi))
    return grouped
