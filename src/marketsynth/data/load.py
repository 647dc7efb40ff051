"""The one loader: a data source → market data (bars, timeframe, label, where they came from).

Every command and the Python API read candles through ``load``. A *data source* is one of four small typed
records — a file, a store query, an exchange fetch (synced into the store first), a bundled sample — and
``MarketData`` is what they all become. ``source_to_dict``/``source_from_dict`` round-trip a source through JSON,
so a checkpoint, a run or a backtest records where its candles came from and can read them again.

Rows no model can use (missing values, price ≤ 0, volume < 0) are dropped with a warning; ``start`` is inclusive and
``end`` exclusive, both UTC.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from marketsynth.data.validate import drop_unusable
from marketsynth.errors import ConfigError, DataError, ExchangeError, ExchangeUnreachableError, TransientExchangeError
from marketsynth.progress import Progress, or_silent
from marketsynth.timeframes import parse_timeframe, timeframe_for_step, to_utc

OFFLINE_HINT = "to run offline use --sample sp500 (or nasdaq) or --csv FILE"


@dataclass(frozen=True)
class FileSource:
    """Candles in a CSV/Parquet file (Binance/Bybit exports or generic OHLCV; see ``data.io``)."""

    path: str
    interval: str | None = None  # the bar length, when the file's spacing should not be inferred
    start: Any = None
    end: Any = None
    kind: str = field(default="file", init=False)


@dataclass(frozen=True)
class StoreSource:
    """Candles already in the store (DuckDB file or PostgreSQL URL; ``None``: the default store)."""

    symbol: str
    interval: str
    exchange: str | None = None  # None: the only exchange that holds this symbol and interval
    store: str | None = None
    start: Any = None
    end: Any = None
    kind: str = field(default="store", init=False)


@dataclass(frozen=True)
class ExchangeSource:
    """Candles fetched from an exchange into the store (only what it lacks), then read back."""

    exchange: str
    symbol: str
    interval: str
    start: Any
    end: Any
    store: str | None = None
    base_url: str | None = None
    retries: int = 6
    category: str = "linear"
    kind: str = field(default="exchange", init=False)


@dataclass(frozen=True)
class SampleSource:
    """A bundled offline sample (``data.samples``: S&P 500 or NASDAQ daily candles shipped with ``arch``)."""

    name: str
    start: Any = None
    end: Any = None
    kind: str = field(default="sample", init=False)


DataSource = FileSource | StoreSource | ExchangeSource | SampleSource
_KINDS = {cls.kind: cls for cls in (FileSource, StoreSource, ExchangeSource, SampleSource)}


@dataclass
class MarketData:
    """Candles to work on. ``timeframe``: their bar length (None when a file's spacing is irregular);
    ``adjacent``: the longest step between bars that are still neighbours when windows are cut (the timeframe; a
    week for trading-day samples, whose weekends are closures, not gaps); ``description``: JSON-ready facts about
    where they came from (store URL, sample description) plus their span."""

    bars: pd.DataFrame
    source: DataSource
    timeframe: str | None
    adjacent: str | None
    label: str
    description: dict[str, Any] = field(default_factory=dict)

    def slice(self, rows) -> MarketData:
        """The same market data restricted to ``rows`` (a slice or positions of ``bars``)."""
        bars = self.bars.iloc[rows].reset_index(drop=True)
        return dataclasses.replace(self, bars=bars, description={**self.description, **span(bars)})


def load(source: DataSource, *, progress: Progress | None = None) -> MarketData:
    """The candles ``source`` names, limited to its [start, end); a one-line error when there are none."""
    progress = or_silent(progress)
    loader = {"file": _from_file, "store": _from_store, "exchange": _from_exchange, "sample": _from_sample}
    if source.kind not in loader:
        raise ConfigError(f"unknown data source kind '{source.kind}'")
    stage = "fetch" if source.kind == "exchange" else "load"
    if stage == "load":
        progress.start("load", 1, label_of(source))
    bars, timeframe, adjacent, description = loader[source.kind](source, progress)
    bars = _limit(bars, source.start, source.end)
    bars = drop_unusable(bars.reset_index(drop=True), source=label_of(source))
    if bars.empty:
        raise DataError(f"no candles in {label_of(source)} for the requested period")
    progress.finish(stage, f"{len(bars):,} bars")
    return MarketData(bars, source, timeframe, adjacent, label_of(source), {**description, **span(bars)})


def label_of(source: DataSource) -> str:
    """A short human name: ``BTCUSDT_1h.csv``, ``sample sp500``, ``bybit BTCUSDT 1h``."""
    if isinstance(source, FileSource):
        return Path(source.path).name
    if isinstance(source, SampleSource):
        return f"sample {source.name}"
    exchange = source.exchange or ""
    return f"{exchange} {source.symbol.upper()} {parse_timeframe(source.interval).name}".strip()


def source_to_dict(source: DataSource) -> dict[str, Any]:
    """JSON-ready: the source's fields (times as ISO 8601) and its ``kind``."""
    out = {"kind": source.kind}
    for f in dataclasses.fields(source):
        value = getattr(source, f.name)
        out[f.name] = value.isoformat() if isinstance(value, pd.Timestamp) else value
    return out


def source_from_dict(data: dict[str, Any]) -> DataSource:
    """The source ``source_to_dict`` described; ConfigError when it is not a re-readable source."""
    cls = _KINDS.get(str(data.get("kind")))
    if cls is None:
        raise ConfigError(f"'{data.get('kind')}' is not a data source that can be read again")
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    return cls(**{k: v for k, v in data.items() if k in names})


def with_range(source: DataSource, start=None, end=None) -> DataSource:
    """``source`` limited to [start, end) (either may be None: keep the source's own)."""
    return dataclasses.replace(source, start=source.start if start is None else start,
                               end=source.end if end is None else end)


def span(bars: pd.DataFrame) -> dict[str, Any]:
    """First and last bar time and the number of bars."""
    if bars.empty:
        return {"start": None, "end": None, "bars": 0}
    return {"start": bars["time"].iloc[0].isoformat(), "end": bars["time"].iloc[-1].isoformat(), "bars": len(bars)}


# ---- one function per kind: (bars, timeframe, adjacent, description) ---------------------------------------
def _from_file(source: FileSource, progress: Progress):
    from marketsynth.data.io import read_bars_file

    bars = read_bars_file(source.path)
    timeframe = parse_timeframe(source.interval).name if source.interval else infer_timeframe(bars["time"])
    return bars, timeframe, timeframe, {"file": str(source.path)}


def _from_store(source: StoreSource, progress: Progress):
    from marketsynth.data.store import open_store

    tf = parse_timeframe(source.interval).name
    with open_store(source.store, read_only=True) as db:
        exchange = source.exchange or only_exchange(db, source.symbol, tf)
        bars = db.read_bars(exchange, source.symbol, tf, source.start, source.end)
        url = db.url
    return bars, tf, tf, {"store": url, "exchange": exchange}


def _from_exchange(source: ExchangeSource, progress: Progress):
    from marketsynth.data.exchanges import get_source
    from marketsynth.data.store import open_store
    from marketsynth.data.sync import sync_series

    if source.start is None or source.end is None:
        raise ConfigError("an exchange fetch needs a period: --days N, or --start and --end")
    tf = parse_timeframe(source.interval)
    progress.start("fetch", None, f"{source.exchange} {source.symbol.upper()} {tf.name}")
    exchange = get_source(source.exchange, base_url=source.base_url, category=source.category,
                          max_attempts=source.retries)
    exchange.retry.on_retry = lambda text: progress.warn("fetch", text[:80])
    try:
        with exchange, open_store(source.store) as db:
            sync_series(db, exchange, source.symbol, tf, source.start, source.end,
                        progress=progress, stage="fetch")
            bars = db.read_bars(exchange.name, source.symbol, tf, source.start, source.end)
            url = db.url
    except ExchangeUnreachableError as exc:
        raise ExchangeUnreachableError(exc.detail, OFFLINE_HINT) from exc
    except ExchangeError as exc:
        if isinstance(exc, TransientExchangeError) or isinstance(exc.__cause__, TransientExchangeError):
            raise ExchangeError(f"{exc}; {OFFLINE_HINT}") from exc
        raise
    return bars, tf.name, tf.name, {"store": url, "exchange": exchange.name}


def _from_sample(source: SampleSource, progress: Progress):
    from marketsynth.data.samples import get_sample, load_sample

    sample = get_sample(source.name)
    bars = load_sample(sample.name)
    return bars, sample.interval, sample.adjacent_within, {"description": sample.description}


def _limit(bars: pd.DataFrame, start, end) -> pd.DataFrame:
    if start is not None:
        bars = bars[bars["time"] >= to_utc(start)]
    if end is not None:
        bars = bars[bars["time"] < to_utc(end)]
    return bars


def infer_timeframe(times) -> str | None:
    """The timeframe whose bar length is the most common step between ``times`` (None if none matches)."""
    times = pd.DatetimeIndex(times)
    if len(times) < 2:
        return None
    step = pd.Series(times[1:] - times[:-1]).mode()[0]
    tf = timeframe_for_step(step)
    return tf.name if tf is not None else None


def only_exchange(db, symbol: str, interval: str) -> str:
    """The one exchange the store holds ``symbol`` × ``interval`` for; a one-line error otherwise."""
    held = db.exchanges_for(symbol, interval)
    if not held:
        raise DataError(f"the store {db.url} has no {symbol.upper()} {interval} candles; fetch them with "
                        f"'marketsynth fetch --exchange bybit --symbol {symbol.upper()} --interval {interval} "
                        f"--days 365'")
    if len(held) > 1:
        raise ConfigError(f"{symbol.upper()} {interval} is stored for {', '.join(held)}; pick one with --exchange")
    return held[0]
