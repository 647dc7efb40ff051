"""Shared CLI pieces: consoles, the progress display, option parsing helpers."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from marketsynth.errors import ConfigError
from marketsynth.timeframes import to_utc

# Piped output is not wrapped at 80 columns: tables stay one line per row in logs and files.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)


@dataclass
class CliState:
    debug: bool = False


state = CliState()


def progress_bar(*extra_columns, transient: bool = False) -> Progress:
    """The one progress display: description, bar, done/total, elapsed, remaining (+ live fields).

    Drawn on stderr so stdout stays clean for tables and data; hidden when MARKETSYNTH_NO_PROGRESS is set.
    """
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra_columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
        disable=bool(os.environ.get("MARKETSYNTH_NO_PROGRESS")),
    )


def parse_time_option(value: str | None, option: str) -> pd.Timestamp | None:
    """A UTC timestamp from ``2021-01-01``, ``2021-01-01T12:00`` or ``2021-01-01 12:00:00+02:00``."""
    if value is None:
        return None
    try:
        return to_utc(value)
    except (ValueError, TypeError):
        raise ConfigError(f"{option} '{value}' is not a date; use YYYY-MM-DD or an ISO 8601 time (UTC)") from None


def time_range(start: str | None, end: str | None, days: int | None, *, now: pd.Timestamp | None = None,
               required: bool = True) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """Resolve --start/--end/--days into [start, end) in UTC (start inclusive, end exclusive)."""
    if days is not None and start is not None:
        raise ConfigError("give either --days or --start/--end, not both")
    if days is not None and days <= 0:
        raise ConfigError(f"--days must be positive, got {days}")
    now = now or pd.Timestamp.now(tz="UTC")
    lo = parse_time_option(start, "--start")
    hi = parse_time_option(end, "--end")
    if days is not None:
        hi = hi or now
        lo = hi - pd.Timedelta(days=days)
    if required and lo is None:
        raise ConfigError("say which period: --days N, or --start YYYY-MM-DD [--end YYYY-MM-DD]")
    if lo is not None and hi is None and required:
        hi = now
    if lo is not None and hi is not None and lo >= hi:
        raise ConfigError(f"--start {lo:%Y-%m-%d %H:%M} is not before --end {hi:%Y-%m-%d %H:%M}; swap them")
    return lo, hi


def split_list(value: str | None) -> list[str]:
    """``"BTCUSDT, ETHUSDT"`` → ``["BTCUSDT", "ETHUSDT"]``."""
    return [item.strip() for item in (value or "").split(",") if item.strip()]
