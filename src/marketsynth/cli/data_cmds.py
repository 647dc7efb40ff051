"""``marketsynth data check | import | export | resample``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer
from rich.table import Table

from marketsynth.cli.common import console, split_list, time_range
from marketsynth.cli.options import store_option
from marketsynth.data.io import read_bars_file, write_bars_file
from marketsynth.data.resample import bucket_starts, check_resample, resample_bars
from marketsynth.data.store import Store, open_store
from marketsynth.data.validate import check_series, drop_unusable
from marketsynth.errors import ConfigError, DataError
from marketsynth.timeframes import Timeframe, parse_timeframe

data_app = typer.Typer(help="Check, import, export and resample stored candles.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


def resolve_exchange(db: Store, symbol: str, timeframe: Timeframe, exchange: str | None) -> str:
    """The exchange holding symbol × timeframe: the one given, or the only one stored."""
    held = db.exchanges_for(symbol, timeframe)
    if exchange:
        if exchange not in held:
            raise DataError(
                f"the store has no {symbol.upper()} {timeframe.name} from '{exchange}'"
                + (f"; it has it from {', '.join(held)}" if held else "; fetch or import it first")
            )
        return exchange
    if not held:
        raise DataError(
            f"the store has no {symbol.upper()} {timeframe.name} candles; "
            f"fetch them (marketsynth fetch) or import a file (marketsynth data import)"
        )
    if len(held) > 1:
        raise ConfigError(
            f"{symbol.upper()} {timeframe.name} is stored from {', '.join(held)}; pick one with --exchange"
        )
    return held[0]


@data_app.command("check")
def check(
    store: str = store_option(),
    symbol: str = typer.Option(None, "--symbol", "-s", help="Only these symbols (comma-separated)."),
    interval: str = typer.Option(
        None, "--interval", "-i", help="Only these intervals; with --file, the file's interval."
    ),
    file: Path = typer.Option(None, "--file", help="Check a CSV/Parquet file instead of the store."),
) -> None:
    """Per symbol × timeframe: first, last, rows, gaps, known gaps (bars and age), duplicates, OHLC violations."""
    table = Table(title="data check" + (f" — {file}" if file else ""), title_justify="left")
    for column in (
        "exchange",
        "symbol",
        "tf",
        "first (UTC)",
        "last (UTC)",
        "rows",
        "gaps (bars)",
        "largest gap",
        "exchange lacks",
        "known gaps (age)",
        "duplicates",
        "OHLC violations",
    ):
        table.add_column(column, justify="left" if column in ("exchange", "symbol", "tf") else "right")
    if file is not None:
        if not interval:
            raise ConfigError("with --file, say the file's interval: --interval 1h")
        raw = read_bars_file(file, dedupe=False)
        _add_row(table, "file", "-", parse_timeframe(interval), check_series(raw, interval))
        console.print(table)
        return
    symbols = {s.upper() for s in split_list(symbol)}
    intervals = {parse_timeframe(i).name for i in split_list(interval)}
    now = pd.Timestamp.now(tz="UTC")
    with open_store(store, read_only=True) as db:
        known = db.known_gaps()
        # Series with known gaps but no candles too: a store whose gaps swallowed everything must show it.
        series = sorted(set(db.coverage()[["exchange", "symbol", "timeframe"]].itertuples(index=False, name=None))
                        | set(known[["exchange", "symbol", "timeframe"]].itertuples(index=False, name=None)))
        for exchange, name, timeframe in series:
            if (symbols and name not in symbols) or (intervals and timeframe not in intervals):
                continue
            tf = parse_timeframe(timeframe)
            gaps = known[(known.exchange == exchange) & (known.symbol == name) & (known.timeframe == timeframe)]
            bars = db.read_bars(exchange, name, tf)
            report = check_series(bars, tf, list(zip(gaps.start, gaps.end, strict=True)))
            _add_row(table, exchange, name, tf, report, gaps, now)
    if not table.row_count:
        console.print("the store holds no candles yet; fetch some with 'marketsynth fetch' or import a file")
        return
    console.print(table)


def _add_row(table: Table, exchange: str, symbol: str, tf: Timeframe, report, known: pd.DataFrame | None = None,
             now: pd.Timestamp | None = None) -> None:
    v = report.violations
    largest = f"{report.largest_gap_bars} ({_span(tf, report.largest_gap_bars)})" if report.largest_gap_bars else "0"
    kinds = [
        (v.high_below_body, "high<body"),
        (v.low_above_body, "low>body"),
        (v.nonpositive_price, "price<=0"),
        (v.negative_volume, "volume<0"),
        (v.missing_values, "empty"),
    ]
    violations = ", ".join(f"{count} {label}" for count, label in kinds if count) or "0"
    fmt = "%Y-%m-%d %H:%M"
    table.add_row(
        exchange,
        symbol,
        tf.name,
        report.first.strftime(fmt) if report.first is not None else "-",
        report.last.strftime(fmt) if report.last is not None else "-",
        str(report.rows),
        f"{report.gaps} ({report.gap_bars})",
        largest,
        str(report.known_gap_bars if known is None else _bars_in(tf, known)),
        "-" if known is None else _known_gaps(known, now),
        str(report.duplicates),
        violations,
    )


def _bars_in(tf: Timeframe, known: pd.DataFrame) -> int:
    """Bars inside the known gaps (before the first candle too: a listing date, or a poisoned store)."""
    return sum(len(tf.open_times(a, b)) for a, b in zip(known.start, known.end, strict=True))


def _known_gaps(known: pd.DataFrame, now: pd.Timestamp) -> str:
    """How many known gaps and how long ago they were recorded: ``0``, ``1 (3.0 d)``, ``4 (2 h–12.5 d)``."""
    if known.empty:
        return "0"
    youngest, oldest = _age(now - known.recorded_at.max()), _age(now - known.recorded_at.min())
    return f"{len(known)} ({youngest if youngest == oldest else f'{youngest}–{oldest}'})"


def _age(delta: pd.Timedelta) -> str:
    hours = max(delta.total_seconds(), 0) / 3600
    if hours < 1:
        return f"{hours * 60:.0f} min"
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.1f} d"


def _span(tf: Timeframe, bars: int) -> str:
    if tf.seconds is None:
        return f"{bars} months"
    hours = bars * tf.seconds / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:g} h"


@data_app.command("import")
def import_file(
    file: Path = typer.Argument(..., help="Binance/Bybit export, generic OHLCV CSV, or Parquet."),
    symbol: str = typer.Option(..., "--symbol", "-s", help="Symbol to store the candles under."),
    interval: str = typer.Option(..., "--interval", "-i", help="The file's interval, e.g. 1h."),
    exchange: str = typer.Option("import", "--exchange", "-e", help="Exchange name to store them under."),
    store: str = store_option(),
) -> None:
    """Import candles from a file (idempotent: re-importing changes nothing)."""
    tf = parse_timeframe(interval)
    bars = read_bars_file(file)
    check_alignment(bars, tf, file)
    bars = drop_unusable(bars, source=str(file))
    with open_store(store) as db:
        written = db.write_bars(exchange.lower(), symbol, tf, bars)
        report = check_series(db.read_bars(exchange.lower(), symbol, tf), tf)
    console.print(
        f"imported {written} {tf.name} bars of {symbol.upper()} from {file} "
        f"({bars.time.iloc[0]:%Y-%m-%d %H:%M} → {bars.time.iloc[-1]:%Y-%m-%d %H:%M} UTC); "
        f"the store now holds {report.rows} with {report.gaps} gap(s)"
    )


def check_alignment(bars: pd.DataFrame, tf: Timeframe, source) -> None:
    """Refuse a file whose times are not bar open times of ``tf`` (a wrong --interval, usually)."""
    if bars.empty:
        raise DataError(f"{source}: no candles")
    off = bars["time"] != bucket_starts(bars["time"], tf)
    if off.any():
        first = bars.loc[off, "time"].iloc[0]
        raise DataError(
            f"{source}: {int(off.sum())} timestamp(s) are not {tf.name} bar open times "
            f"(first {first:%Y-%m-%d %H:%M}); check --interval"
        )
    if len(bars) > 2 and tf.seconds:
        step = bars["time"].diff().dropna().min()
        if step < pd.Timedelta(seconds=tf.seconds):
            raise DataError(f"{source}: bars are {step} apart, shorter than {tf.name}; check --interval")


@data_app.command("export")
def export(
    symbol: str = typer.Option(..., "--symbol", "-s"),
    interval: str = typer.Option(..., "--interval", "-i"),
    output: Path = typer.Option(..., "--output", "-o", help="FILE.csv or FILE.parquet."),
    exchange: str = typer.Option(None, "--exchange", "-e", help="Needed only when several exchanges hold it."),
    start: str = typer.Option(None, "--start", help="Inclusive, UTC."),
    end: str = typer.Option(None, "--end", help="Exclusive, UTC."),
    store: str = store_option(),
) -> None:
    """Export candles with columns timestamp (ISO 8601 UTC), open, high, low, close, volume."""
    tf = parse_timeframe(interval)
    lo, hi = time_range(start, end, None, required=False)
    with open_store(store, read_only=True) as db:
        name = resolve_exchange(db, symbol, tf, exchange)
        bars = db.read_bars(name, symbol, tf, lo, hi)
    if bars.empty:
        raise DataError(f"no {symbol.upper()} {tf.name} candles in that range; widen --start/--end")
    write_bars_file(bars, output)
    console.print(f"exported {len(bars)} bars to {output}")


@data_app.command("resample")
def resample(
    symbol: str = typer.Option(..., "--symbol", "-s"),
    source: str = typer.Option(..., "--from", help="Stored interval to aggregate, e.g. 15m."),
    targets: str = typer.Option(..., "--to", help="Target interval(s), comma-separated, e.g. 1h,4h,1d."),
    exchange: str = typer.Option(None, "--exchange", "-e"),
    store: str = store_option(),
) -> None:
    """Aggregate stored candles into larger timeframes (complete buckets only) and store them."""
    src = parse_timeframe(source)
    dsts = [parse_timeframe(t) for t in split_list(targets)]
    for dst in dsts:
        check_resample(src, dst)
    with open_store(store) as db:
        name = resolve_exchange(db, symbol, src, exchange)
        bars = db.read_bars(name, symbol, src)
        for dst in dsts:
            out = resample_bars(bars, src, dst)
            written = db.write_bars(name, symbol, dst, out)
            console.print(f"{name} {symbol.upper()}: {len(bars)} {src.name} bars → {written} {dst.name} bars")
