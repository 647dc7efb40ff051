"""Candle files: import Binance/Bybit exports, generic OHLCV CSV and Parquet; export CSV or Parquet.

Exports have columns ``timestamp`` (ISO 8601 UTC, e.g. ``2021-01-01T00:00:00Z``), open, high, low, close, volume.
Parquet goes through DuckDB, so no extra dependency is needed. Every file is written atomically.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

from marketsynth.data.bars import BAR_COLUMNS, as_bars
from marketsynth.errors import DataError

TIME_NAMES = ("timestamp", "time", "open_time", "opentime", "starttime", "start", "date", "datetime", "ts")
# Binance's headerless kline export: 12 columns, open time first.
BINANCE_COLUMNS = ["time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "count",
                   "taker_buy_volume", "taker_buy_quote_volume", "ignore"]
SUPPORTED = ".csv, .csv.gz, .txt or .parquet"


def read_bars_file(path: str | Path, *, dedupe: bool = True) -> pd.DataFrame:
    """Read candles from a file into a bars frame; any problem is one DataError naming the file and the fix.

    ``dedupe=False`` keeps rows with duplicate times (for ``data check --file``).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"file {path} not found")
    if not path.is_file():
        raise DataError(f"{path} is not a file")
    suffixes = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() == ".parquet":
        raw = _read_parquet(path)
    elif path.suffix.lower() in (".csv", ".txt") or suffixes.endswith(".csv.gz"):
        raw = _read_csv(path)
    else:
        raise DataError(f"{path}: unknown file type '{path.suffix}'; use {SUPPORTED}")
    frame = _standard_columns(raw, path)
    bars = as_bars(frame, source=str(path), dedupe=dedupe)
    numeric = bars[BAR_COLUMNS[1:]]
    if numeric.isna().all(axis=None):
        raise DataError(f"{path}: no numeric OHLCV values found; check the delimiter and column names")
    return bars


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV or Parquet file as it is (no column mapping): generated samples, per-path results. One DataError
    naming the file for anything unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file {path} not found" if not path.exists() else f"{path} is not a file")
    suffix = "".join(path.suffixes[-2:]).lower()
    try:
        if path.suffix.lower() == ".parquet":
            return duckdb.connect().execute("SELECT * FROM read_parquet(?)", [str(path)]).df()
        if path.suffix.lower() in (".csv", ".txt") or suffix.endswith(".csv.gz"):
            return pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - pandas and duckdb raise many types; all mean "unreadable file"
        raise DataError(f"{path}: unreadable file ({_first_line(exc)})") from None
    raise DataError(f"{path}: unknown file type '{path.suffix}'; use .csv or .parquet")


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        raw = pd.read_csv(path, sep=None, engine="python")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{path}: unreadable CSV ({_first_line(exc)}); expected a header row with "
                        f"timestamp, open, high, low, close, volume") from exc
    if raw.empty:
        raise DataError(f"{path}: no rows")
    if _looks_headerless(raw):
        raw = pd.read_csv(path, header=None)
        if raw.shape[1] not in (6, 7, 12):
            raise DataError(f"{path}: a headerless file needs 6 (time, OHLCV), 7 (Bybit) or 12 (Binance) columns, "
                            f"found {raw.shape[1]}")
        raw.columns = BINANCE_COLUMNS[: raw.shape[1]] if raw.shape[1] != 7 else BAR_COLUMNS + ["turnover"]
    return raw


def _looks_headerless(raw: pd.DataFrame) -> bool:
    """A header made of numbers means the first row is data (Binance's data.binance.vision files)."""
    try:
        [float(c) for c in raw.columns]
    except ValueError:
        return False
    return True


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return duckdb.connect().execute("SELECT * FROM read_parquet(?)", [str(path)]).df()
    except duckdb.Error as exc:
        raise DataError(f"{path}: unreadable Parquet ({_first_line(exc)})") from exc


def _standard_columns(raw: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Map the exchanges' and common column spellings onto time, open, high, low, close, volume."""
    lookup = {str(c).strip().lower().replace(" ", "_"): c for c in raw.columns}
    time_column = next((lookup[name] for name in TIME_NAMES if name in lookup), None)
    if time_column is None and isinstance(raw.index, pd.DatetimeIndex):
        raw = raw.reset_index()
        time_column = raw.columns[0]
        lookup = {str(c).strip().lower().replace(" ", "_"): c for c in raw.columns}
    if time_column is None:
        raise DataError(f"{path}: no time column; name one of {', '.join(TIME_NAMES[:4])} "
                        f"(ISO 8601 or epoch milliseconds)")
    out = {"time": raw[time_column]}
    for name in BAR_COLUMNS[1:]:
        column = lookup.get(name) or lookup.get(name[0])  # 'o', 'h', 'l', 'c', 'v'
        if column is None:
            raise DataError(f"{path}: no '{name}' column; expected columns timestamp, open, high, low, close, volume")
        out[name] = raw[column]
    frame = pd.DataFrame(out)
    if pd.api.types.is_numeric_dtype(frame["time"]):
        frame["time"] = _epoch_to_ms(frame["time"], path)
    return frame


def _epoch_to_ms(values: pd.Series, path: Path) -> pd.Series:
    """Epoch numbers in seconds, milliseconds or microseconds (Binance spot since 2025) → milliseconds."""
    if values.isna().any():
        raise DataError(f"{path}: {int(values.isna().sum())} row(s) have no timestamp")
    top = float(values.abs().max())
    if top < 1e11:
        return (values * 1000).astype("int64")
    if top > 1e14:
        return (values // 1000).astype("int64")
    return values.astype("int64")


def write_bars_file(bars: pd.DataFrame, path: str | Path) -> Path:
    """Export with columns timestamp (ISO 8601 UTC), open, high, low, close, volume — CSV or Parquet by suffix."""
    path = Path(path)
    frame = as_bars(bars)
    export = frame.assign(timestamp=frame["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))[
        ["timestamp", *BAR_COLUMNS[1:]]]
    write_frame(export, path)
    return path


def write_frame(frame: pd.DataFrame, path: str | Path) -> None:
    """Write any frame to CSV or Parquet (by suffix) atomically: a failure leaves an existing file untouched."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise DataError(f"cannot write '{path.name}': use a .csv or .parquet file name")
    if not path.parent.exists():
        raise DataError(f"cannot write {path}: folder {path.parent} does not exist")
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            con = duckdb.connect()
            con.register("frame_to_write", frame)
            con.execute(f"COPY frame_to_write TO '{_sql_path(tmp)}' (FORMAT parquet)")
            con.close()


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path next to ``path``; rename it over ``path`` only if the block succeeds."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; give the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_directory(path: Path):
    """Yield an empty temporary folder next to ``path``; if the block succeeds it takes the place of ``path`` (a
    folder, or nothing yet) through ``replace_directory``, so readers see the old folder or the complete new one.
    On failure the old folder stays and the temporary one is removed."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes owner-only folders; give the usual permissions
        replace_directory(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def replace_directory(new: Path, old: Path) -> None:
    """Put folder ``new`` where ``old`` is (or is not yet): ``old`` is renamed aside (``.NAME.previous``), ``new``
    renamed in, the old one removed. If the second rename fails the old folder is put back; a process killed between
    the two renames leaves ``.NAME.previous``, which ``recover_directory`` puts back. Readers see the old folder or the
    new one."""
    new, old = Path(new), Path(old)
    backup = _backup_of(old)
    shutil.rmtree(backup, ignore_errors=True)
    moved = old.exists()
    if moved:
        os.rename(old, backup)
    try:
        os.rename(new, old)
    except BaseException:
        if moved:
            os.rename(backup, old)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def recover_directory(path: Path) -> Path:
    """Undo a ``replace_directory`` interrupted between moving the old folder aside and moving the new one in."""
    path = Path(path)
    backup = _backup_of(path)
    if not path.exists() and backup.is_dir():
        os.rename(backup, path)
    return path


def _backup_of(path: Path) -> Path:
    return path.with_name(f".{path.name}.previous")
