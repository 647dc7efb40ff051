"""Shared CLI pieces: consoles, the progress display, option parsing helpers."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from marketsynth import progress as protocol
from marketsynth.errors import ConfigError
from marketsynth.timeframes import to_utc

# Piped output is not wrapped at 80 columns: tables stay one line per row in logs and files.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)


@dataclass
class CliState:
    debug: bool = False


state = CliState()


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


class StageProgress(protocol.Progress):
    """The progress protocol drawn with rich: one row per stage on stderr; a stage that starts again (the next
    model) restarts its own row."""

    def __init__(self, display: Progress):
        self.display, self.tasks = display, {}

    def start(self, stage: str, total: float | None = None, note: str = "") -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.display.add_task(stage, total=total, note=note)
            return
        self.display.reset(self.tasks[stage], total=total, note=note)
        if total is None:
            self._task(stage).total = None  # unknown until the stage says (reset keeps the old total)

    def advance(self, stage: str, steps: float = 1, note: str | None = None, total: float | None = None) -> None:
        if stage not in self.tasks:
            self.start(stage, total)
        fields = {} if note is None else {"note": note}
        self.display.update(self.tasks[stage], advance=steps, total=total, **fields)

    def finish(self, stage: str, note: str = "") -> None:
        if stage not in self.tasks:
            self.start(stage)
        task = self._task(stage)
        total = task.total if task.total else max(task.completed, 1)
        self.display.update(self.tasks[stage], total=total, completed=total, note=note)

    def _task(self, stage: str):
        return next(task for task in self.display.tasks if task.id == self.tasks[stage])


@contextmanager
def stage_display():
    """A ``StageProgress`` on stderr for the duration of a command; on failure the rows are cleared, so the
    error stays the only line. Hidden when MARKETSYNTH_NO_PROGRESS is set."""
    display = Progress(TextColumn("[bold]{task.description:<8}"), BarColumn(bar_width=30), MofNCompleteColumn(),
                       TimeElapsedColumn(), TextColumn("{task.fields[note]}"), console=err_console,
                       disable=bool(os.environ.get("MARKETSYNTH_NO_PROGRESS")))
    with display:
        try:
            yield StageProgress(display)
        except BaseException:
            for task in display.task_ids:
                display.update(task, visible=False)
            raise
