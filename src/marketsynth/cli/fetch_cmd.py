"""``marketsynth fetch``: bring candles (and funding rates) from an exchange into the store (incremental,
resumable)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import typer
from rich.table import Table

from marketsynth.cli.common import console, split_list, stage_display, time_range
from marketsynth.cli.options import store_option
from marketsynth.config import load_settings
from marketsynth.data.exchanges import EXCHANGES, get_source
from marketsynth.data.io import write_bars_file
from marketsynth.data.store import open_store
from marketsynth.data.sync import FundingResult, SyncResult, sync_funding, sync_series
from marketsynth.errors import ConfigError, MarketSynthError
from marketsynth.timeframes import parse_timeframe


def register(app: typer.Typer) -> None:
    @app.command("fetch")
    def fetch(
        exchange: str = typer.Option(None, "--exchange", "-e", help=f"Exchange: {' | '.join(EXCHANGES)}."),
        symbol: str = typer.Option(None, "--symbol", "-s", help="Symbol(s), comma-separated, e.g. BTCUSDT,ETHUSDT."),
        interval: str = typer.Option(None, "--interval", "-i", help="Interval(s), comma-separated: 15m,1h (or 15,60)."),
        days: int = typer.Option(None, "--days", help="The last N days up to the last closed candle."),
        start: str = typer.Option(None, "--start", help="First open time, inclusive (UTC), e.g. 2021-01-01."),
        end: str = typer.Option(None, "--end", help="Last open time, exclusive (UTC); default: now."),
        category: str = typer.Option(None, "--category", help="Bybit market: linear | spot | inverse."),
        store: str = store_option(),
        base_url: str = typer.Option(None, "--base-url", help="Override the exchange URL (testnet, local fake)."),
        output: Path = typer.Option(None, "--output", "-o", help="Also export the range to FILE.csv|.parquet."),
        config: Path = typer.Option(None, "--config", "-c", help="Fetch every symbol × timeframe of a config file."),
        workers: int = typer.Option(4, "--workers", help="Series fetched concurrently."),
        retries: int = typer.Option(6, "--retries", min=1, help="Attempts per request before giving up."),
        recheck_gaps: bool = typer.Option(
            False, "--recheck-gaps", help="Ask the exchange again for known gaps in the range; store what comes back."
        ),
        funding: bool = typer.Option(
            False, "--funding", help="Also fetch each symbol's funding-rate history (perpetuals) over the range."
        ),
    ) -> None:
        """Fetch closed candles into the store; re-runs fetch only what is missing. Times are UTC."""
        settings = load_settings(config).data if config else None
        exchange = (exchange or (settings.exchange if settings else None) or "").lower()
        if not exchange:
            raise ConfigError("say which exchange: --exchange bybit or --exchange binance (or --config FILE)")
        symbols = split_list(symbol) or (settings.symbols if settings else [])
        intervals = split_list(interval) or (settings.timeframes if settings else [])
        if not symbols:
            raise ConfigError("say which symbol: --symbol BTCUSDT (or --config FILE)")
        if not intervals:
            raise ConfigError("say which interval: --interval 1h (or --config FILE)")
        timeframes = [parse_timeframe(i) for i in intervals]
        if settings and days is None and start is None:
            days = settings.lookback_days
        lo, hi = time_range(start, end, days)
        if output and len(symbols) * len(timeframes) != 1:
            raise ConfigError("--output exports one series; give a single --symbol and --interval")
        source = get_source(
            exchange,
            base_url=base_url or (settings.base_url if settings else None),
            category=category or (settings.category if settings else "linear"),
            max_attempts=retries,
        )
        target = store or (settings.store if settings else None)
        if funding and source.category not in source.funding_categories:
            raise ConfigError(f"--funding needs perpetuals; {source.display_name} {source.category} has no funding "
                              f"rates (use --category {' or '.join(source.funding_categories)})")
        jobs: list[tuple] = [(s.upper(), tf) for s in symbols for tf in timeframes]
        if funding:
            jobs += [(name, None) for name in dict.fromkeys(s.upper() for s in symbols)]
        with source, open_store(target) as db:
            results = _fetch_all(db, source, jobs, lo, hi, workers, recheck_gaps)
            _print_results(results)
            if output:
                bars = db.read_bars(source.name, symbols[0], timeframes[0], lo, hi)
                write_bars_file(bars, output)
                console.print(f"exported {len(bars)} bars to {output}")


def _fetch_all(db, source, pairs, lo, hi, workers, recheck_gaps=False) -> list[SyncResult | FundingResult]:
    """Sync each (symbol, timeframe) pair, and (symbol, None) for funding rates, in a thread pool; one progress row
    each. The first error is raised after all finish."""
    with stage_display() as progress:
        stages = {pair: f"{source.name} {pair[0]} {pair[1].name if pair[1] else 'funding'}" for pair in pairs}
        for stage in stages.values():  # one row per series, in order
            progress.start(stage, None)

        def run(pair):
            if pair[1] is None:
                result = sync_funding(db, source, pair[0], lo, hi, progress=progress, stage=stages[pair])
            else:
                result = sync_series(db, source, pair[0], pair[1], lo, hi, progress=progress, stage=stages[pair],
                                     recheck_gaps=recheck_gaps)
            progress.finish(stages[pair])
            return result

        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(pairs)))) as pool:
            futures = [pool.submit(run, pair) for pair in pairs]
        results, errors = [], []
        for future in futures:
            try:
                results.append(future.result())
            except MarketSynthError as exc:
                errors.append(exc)
    if errors:
        if results:
            _print_results(results)
        raise errors[0]
    return results


def _print_results(results: list[SyncResult | FundingResult]) -> None:
    """One row per series; funding rates on a row of their own (interval "funding"); a re-check says how many
    known-gap bars it asked for again."""
    table = Table(title="fetch", title_justify="left")
    for column in ("exchange", "symbol", "interval", "range (UTC)", "fetched", "exchange lacks", "status"):
        table.add_column(column, justify="right" if column in ("fetched", "exchange lacks") else "left")
    for r in results:
        span = f"{r.start:%Y-%m-%d %H:%M} → {r.end:%Y-%m-%d %H:%M}"
        if isinstance(r, FundingResult):
            table.add_row(r.exchange, r.symbol, "funding", span, str(r.stored_rates), "-", r.status)
            continue
        status = r.status + (f" (re-checked {r.rechecked_bars})" if r.rechecked_bars else "")
        table.add_row(r.exchange, r.symbol, r.timeframe, span, str(r.stored_bars), str(r.missing_bars), status)
    console.print(table)
