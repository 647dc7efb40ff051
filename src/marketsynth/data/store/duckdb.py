"""The default store: one embedded DuckDB file, zero set-up.

Times are stored as naive ``TIMESTAMP`` values that mean UTC. Every write runs in one transaction.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from marketsynth.data.store.base import SCHEMA_VERSION, TIMEFRAME_ROWS, Store
from marketsynth.errors import StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS store_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS timeframes (name VARCHAR PRIMARY KEY, seconds BIGINT, pandas_freq VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS bars (
    exchange VARCHAR NOT NULL, symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL, time TIMESTAMP NOT NULL,
    open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE,
    PRIMARY KEY (exchange, symbol, timeframe, time));
CREATE TABLE IF NOT EXISTS known_gaps (
    exchange VARCHAR NOT NULL, symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL,
    start_time TIMESTAMP NOT NULL, end_time TIMESTAMP NOT NULL, recorded_at TIMESTAMP NOT NULL,
    PRIMARY KEY (exchange, symbol, timeframe, start_time));
CREATE TABLE IF NOT EXISTS sync_state (
    exchange VARCHAR NOT NULL, symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL,
    synced_start TIMESTAMP NOT NULL, synced_end TIMESTAMP NOT NULL, synced_at TIMESTAMP NOT NULL,
    PRIMARY KEY (exchange, symbol, timeframe));
"""


def _naive(ts: pd.Timestamp | None):
    return None if ts is None else ts.tz_convert("UTC").tz_localize(None).to_pydatetime()


class DuckDBStore(Store):
    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        self.url = str(self.path)
        if read_only and not self.path.exists():
            raise StoreError(f"no store at {self.path}; fetch or import data first (marketsynth fetch ...)")
        if self.path.parent and not self.path.parent.exists():
            raise StoreError(f"cannot create store {self.path}: folder {self.path.parent} does not exist")
        self._con = None
        try:
            self._con = duckdb.connect(str(self.path), read_only=read_only)
            if not read_only:
                self._con.execute(SCHEMA)
                self._con.executemany("INSERT OR IGNORE INTO timeframes VALUES (?, ?, ?)", TIMEFRAME_ROWS)
                self._con.execute(
                    "INSERT OR IGNORE INTO store_meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
                )
        except duckdb.Error as exc:
            if getattr(self, "_con", None) is not None:
                self._con.close()
            raise StoreError(f"cannot open DuckDB store {self.path}: {_first_line(exc)}") from exc

    # ---- backend hooks ---------------------------------------------------------------------------------------
    def _upsert(self, exchange, symbol, timeframe, bars):
        frame = bars.assign(time=bars["time"].dt.tz_convert("UTC").dt.tz_localize(None))
        frame.insert(0, "timeframe", timeframe)
        frame.insert(0, "symbol", symbol)
        frame.insert(0, "exchange", exchange)
        self._transaction(
            lambda con: (
                con.register("incoming_bars", frame),
                con.execute(
                    """INSERT INTO bars SELECT exchange, symbol, timeframe, time, open, high, low, close, volume
                       FROM incoming_bars
                       ON CONFLICT (exchange, symbol, timeframe, time) DO UPDATE SET
                         open = excluded.open, high = excluded.high, low = excluded.low,
                         close = excluded.close, volume = excluded.volume"""
                ),
                con.unregister("incoming_bars"),
            )
        )

    def _select(self, exchange, symbol, timeframe, start, end):
        sql = (
            "SELECT time, open, high, low, close, volume FROM bars WHERE exchange = ? AND symbol = ? AND timeframe = ?"
        )
        params: list = [exchange, symbol, timeframe]
        if start is not None:
            sql += " AND time >= ?"
            params.append(_naive(start))
        if end is not None:
            sql += " AND time < ?"
            params.append(_naive(end))
        frame = self._query(sql + " ORDER BY time", params)
        frame["time"] = pd.to_datetime(frame["time"]).dt.tz_localize("UTC")
        return frame

    def _coverage(self):
        return self._query(
            """SELECT exchange, symbol, timeframe, min(time) AS first, max(time) AS last, count(*) AS rows
               FROM bars GROUP BY exchange, symbol, timeframe"""
        )

    def _insert_missing(self, exchange, symbol, timeframe, ranges):
        now = pd.Timestamp.now(tz="UTC")
        rows = [(exchange, symbol, timeframe, _naive(lo), _naive(hi), _naive(now)) for lo, hi in ranges]
        self._transaction(
            lambda con: con.executemany(
                """INSERT INTO known_gaps VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (exchange, symbol, timeframe, start_time) DO UPDATE SET
                 end_time = greatest(known_gaps.end_time, excluded.end_time), recorded_at = excluded.recorded_at""",
                rows,
            )
        )

    def _select_missing(self, exchange, symbol, timeframe):
        rows = self._query(
            "SELECT start_time, end_time FROM known_gaps WHERE exchange = ? AND symbol = ? AND timeframe = ?",
            [exchange, symbol, timeframe],
        )
        return [(pd.Timestamp(a, tz="UTC"), pd.Timestamp(b, tz="UTC")) for a, b in rows.itertuples(index=False)]

    def _upsert_sync_state(self, exchange, symbol, timeframe, start, end, at):
        self._transaction(
            lambda con: con.execute(
                """INSERT INTO sync_state VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (exchange, symbol, timeframe) DO UPDATE SET
                 synced_start = least(sync_state.synced_start, excluded.synced_start),
                 synced_end = greatest(sync_state.synced_end, excluded.synced_end),
                 synced_at = excluded.synced_at""",
                [exchange, symbol, timeframe, _naive(start), _naive(end), _naive(at)],
            )
        )

    def _select_sync_state(self):
        return self._query("SELECT exchange, symbol, timeframe, synced_start, synced_end, synced_at FROM sync_state")

    def close(self):
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    # ---- helpers --------------------------------------------------------------------------------------------
    def _query(self, sql: str, params=None) -> pd.DataFrame:
        try:
            return self._con.execute(sql, params or []).df()
        except duckdb.Error as exc:
            raise StoreError(f"reading DuckDB store {self.path} failed: {_first_line(exc)}") from exc

    def _transaction(self, work) -> None:
        con = self._con
        try:
            con.execute("BEGIN TRANSACTION")
            work(con)
            con.execute("COMMIT")
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            raise StoreError(
                f"writing DuckDB store {self.path} failed, nothing was changed: {_first_line(exc)}"
            ) from exc
        except BaseException:
            con.execute("ROLLBACK")
            raise


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
