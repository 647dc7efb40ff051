"""The one set of data-source options every command shares.

``@data_source_options(...)`` adds ``--csv FILE | --sample NAME | --symbol S --interval I [--exchange E]
[--store URL] [--start --end | --days N] [--fetch/--no-fetch --base-url URL --retries N]`` to a command and hands it
one ``source: DataSource | None`` argument instead (``marketsynth.data.load``). Names are the same in every command;
``--real`` stays an alias of ``--csv`` (evaluate and scenarios documented it).
"""

from __future__ import annotations

import functools
import inspect
import typing
from pathlib import Path

import typer

from marketsynth.cli.common import time_range
from marketsynth.data.load import DataSource, ExchangeSource, FileSource, SampleSource, StoreSource
from marketsynth.errors import ConfigError

WHERE = "--csv FILE, --sample NAME, or --symbol S --interval I"
STORE_HELP = "DuckDB file or postgresql:// URL (default marketsynth.duckdb, or $MARKETSYNTH_STORE)."


def store_option(**kwargs):
    """The ``--store`` option every command that opens the store declares."""
    return typer.Option(None, "--store", help=STORE_HELP, **kwargs)


def _options(*, fetch_default: bool) -> dict[str, tuple[type, typing.Any]]:
    fetch_help = ("Fetch what the store lacks from the exchange first (--no-fetch: store only, no network)."
                  if fetch_default else "Fetch what the store lacks from the exchange first (default: store only).")
    return {
        "csv": (Path, typer.Option(None, "--csv", "--real", help="Candles from a file (CSV or Parquet; "
                                                                 "Binance/Bybit/generic).", rich_help_panel="Data")),
        "sample": (str, typer.Option(None, "--sample", help="An offline dataset: sp500 | nasdaq (daily, from arch).",
                                     rich_help_panel="Data")),
        "symbol": (str, typer.Option(None, "--symbol", "-s", help="Candles of this symbol (from the store, or "
                                                                  "fetched with --fetch)...", rich_help_panel="Data")),
        "interval": (str, typer.Option(None, "--interval", "-i", help="...at this interval, e.g. 1h.",
                                       rich_help_panel="Data")),
        "exchange": (str, typer.Option(None, "--exchange", "-e", help="bybit | binance (when several hold it; "
                                                                      "bybit when fetching).",
                                       rich_help_panel="Data")),
        "store": (str, store_option(rich_help_panel="Data")),
        "start": (str, typer.Option(None, "--start", help="First bar, inclusive (UTC), e.g. 2023-01-01.",
                                    rich_help_panel="Data")),
        "end": (str, typer.Option(None, "--end", help="Last bar, exclusive (UTC).", rich_help_panel="Data")),
        "days": (int, typer.Option(None, "--days", help="The last N days instead of --start/--end.",
                                   rich_help_panel="Data")),
        "fetch": (bool, typer.Option(fetch_default, "--fetch/--no-fetch", help=fetch_help, rich_help_panel="Data")),
        "base_url": (str, typer.Option(None, "--base-url", help="Exchange URL override (testnet, a local fake).",
                                       rich_help_panel="Data")),
        "retries": (int, typer.Option(6, "--retries", min=1, help="Attempts per exchange request.",
                                      rich_help_panel="Data")),
    }


def data_source_options(*, fetch_default: bool = False, default_symbol: tuple[str, str, str, int] | None = None,
                        required: bool = True):
    """Decorate a command taking ``source: DataSource | None``: it gets the shared options instead.

    ``default_symbol`` (exchange, symbol, interval, days) is used when no source is named (``run``: Bybit
    BTCUSDT 1h, 365 days); ``required=False`` passes ``None`` when nothing is named.
    """

    def decorate(command):
        options = _options(fetch_default=fetch_default)
        signature = inspect.signature(command)
        hints = typing.get_type_hints(command)
        own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()
               if p.name != "source"]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
                 for name, (kind, option) in options.items()]

        @functools.wraps(command)
        def wrapper(**kwargs):
            values = {name: kwargs.pop(name) for name in options}
            kwargs["source"] = source_from_options(**values, default_symbol=default_symbol, required=required)
            return command(**kwargs)

        wrapper.__signature__ = signature.replace(parameters=[*own, *added])
        wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *added]}
        del wrapper.__wrapped__  # typer must read the new signature, not the command's
        return wrapper

    return decorate


def source_from_options(*, csv=None, sample=None, symbol=None, interval=None, exchange=None, store=None, start=None,
                        end=None, days=None, fetch=False, base_url=None, retries=6,
                        default_symbol: tuple[str, str, str, int] | None = None,
                        required: bool = True) -> DataSource | None:
    """The data source the options name; option conflicts are one-line ConfigErrors."""
    if csv is not None and sample is not None:
        raise ConfigError("give either --csv FILE or --sample NAME, not both")
    if csv is not None or sample is not None:
        used = [f"--{n.replace('_', '-')}" for n, v in (("symbol", symbol), ("exchange", exchange),
                                                        ("days", days), ("base_url", base_url)) if v is not None]
        if used:
            raise ConfigError(f"--{'csv' if csv is not None else 'sample'} does not take {', '.join(used)}")
        lo, hi = time_range(start, end, None, required=False)
        if sample is not None:
            from marketsynth.data.samples import get_sample

            return SampleSource(get_sample(sample).name, lo, hi)  # an unknown name fails here, before any work
        return FileSource(str(csv), interval, lo, hi)
    if symbol is None and default_symbol is None:
        if not required:
            return None
        raise ConfigError(f"say where the candles come from: {WHERE}")
    if symbol is None:
        exchange, symbol, interval, days = (exchange or default_symbol[0], default_symbol[1],
                                            interval or default_symbol[2], days if start is not None or days
                                            is not None else default_symbol[3])
    if interval is None:
        raise ConfigError("--symbol needs --interval, e.g. --interval 1h")
    if not fetch:
        if base_url is not None:
            raise ConfigError("--base-url is for fetching; add --fetch (or drop --base-url)")
        lo, hi = time_range(start, end, days, required=False)
        return StoreSource(symbol.upper(), interval, exchange.lower() if exchange else None, store, lo, hi)
    lo, hi = time_range(start, end, days)
    return ExchangeSource((exchange or "bybit").lower(), symbol.upper(), interval, lo, hi, store, base_url, retries)
