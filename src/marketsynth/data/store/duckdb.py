"""The default store: one embedded DuckDB file, zero set-up.

Times are stored as naive ``TIMESTAMP`` values that mean UTC. Every write runs in one transaction. Opening a
store for writing creates what is missing and migrates older tables in place (``MIGRATIONS``); a read-only open
changes nothing and reads an older store as it is.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from marketsynth.data.store.base import OLD_GAP_REASON, SCHEMA_VERSION, TIMEFRAME_ROWS, Store
from marketsynth.data.store.trading import TRADING_SCHEMA
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
CREATE TABLE IF NOT EXISTS funding_rates (
    exchange VARCHAR NOT NULL, symbol VARCHAR NOT NULL, time TIMESTAMP NOT NULL, rate DOUBLE NOT NULL,
    PRIMARY KEY (exchange, symbol, time));
CREATE TABLE IF NOT EXISTS funding_sync (
    exchange VARCHAR NOT NULL, symbol VARCHAR NOT NULL,
    synced_start TIMESTAMP NOT NULL, synced_end TIMESTAMP NOT NULL, synced_at TIMESTAMP NOT NULL,
    PRIMARY KEY (exchange, symbol));
"""
# Version 1 stores lack the reason of known gaps; added in place, old rows get the default.
MIGRATIONS = f"""
ALTER TABLE known_gaps ADD COLUMN IF NOT EXISTS reason VARCHAR DEFAULT '{OLD_GAP_REASON}';
"""
GAP_COLUMNS = "exchange, symbol, timeframe, start_time, end_time, recorded_at, reason"


def _naive(ts: pd.Timestamp | None):
    return None if ts is None else ts.tz_convert("UTC").tz_localize(None).to_pydatetime()


def _utc(value) -> pd.Timestamp:
    return pd.Timestamp(value, tz="UTC")


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
                self._con.execute(MIGRATIONS)
                for statement in TRADING_SCHEMA:
                    self._con.execute(statement)
                self._con.executemany("INSERT OR IGNORE INTO timeframes VALUES (?, ?, ?)", TIMEFRAME_ROWS)
                self._con.execute(
                    "INSERT INTO store_meta VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = "
                    "CAST(greatest(CAST(store_meta.value AS INTEGER), CAST(excluded.value AS INTEGER)) AS VARCHAR)",
                    [str(SCHEMA_VERSION)],
                )
            self._tables = self._columns()
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

    def _insert_missing(self, exchange, symbol, timeframe, ranges, at, reason):
        rows = [(exchange, symbol, timeframe, _naive(lo), _naive(hi), _naive(at), reason) for lo, hi in ranges]
        self._transaction(
            lambda con: con.executemany(
                f"""INSERT INTO known_gaps ({GAP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (exchange, symbol, timeframe, start_time) DO UPDATE SET
                 end_time = greatest(known_gaps.end_time, excluded.end_time), recorded_at = excluded.recorded_at,
                 reason = excluded.reason""",
                rows,
            )
        )

    def _select_known_gaps(self, exchange, symbol, timeframe):
        reason = "reason" if "reason" in self._tables.get("known_gaps", ()) else f"'{OLD_GAP_REASON}'"
        sql = f"SELECT exchange, symbol, timeframe, start_time, end_time, recorded_at, {reason} FROM known_gaps"
        filters = [(name, value) for name, value in (("exchange", exchange), ("symbol", symbol),
                                                     ("timeframe", timeframe)) if value is not None]
        if filters:
            sql += " WHERE " + " AND ".join(f"{name} = ?" for name, _ in filters)
        rows = self._con_rows(sql, [value for _, value in filters])
        return [(e, s, t, _utc(a), _utc(b), _utc(at), r) for e, s, t, a, b, at, r in rows]

    def _replace_missing(self, exchange, symbol, timeframe, remove_starts, add_rows):
        def work(con):
            con.executemany(
                "DELETE FROM known_gaps WHERE exchange = ? AND symbol = ? AND timeframe = ? AND start_time = ?",
                [(exchange, symbol, timeframe, _naive(start)) for start in remove_starts],
            )
            if add_rows:
                con.executemany(
                    f"INSERT INTO known_gaps ({GAP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(exchange, symbol, timeframe, _naive(lo), _naive(hi), _naive(at), reason)
                     for lo, hi, at, reason in add_rows],
                )

        self._transaction(work)

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

    def _upsert_funding(self, exchange, symbol, rates):
        frame = pd.DataFrame({"exchange": exchange, "symbol": symbol,
                              "time": rates["time"].dt.tz_convert("UTC").dt.tz_localize(None), "rate": rates["rate"]})
        self._transaction(
            lambda con: (
                con.register("incoming_funding", frame),
                con.execute(
                    """INSERT INTO funding_rates SELECT exchange, symbol, time, rate FROM incoming_funding
                       ON CONFLICT (exchange, symbol, time) DO UPDATE SET rate = excluded.rate"""
                ),
                con.unregister("incoming_funding"),
            )
        )

    def _select_funding(self, exchange, symbol, start, end):
        if "funding_rates" not in self._tables:  # an older store opened read-only
            return pd.DataFrame(columns=["time", "rate"])
        sql = "SELECT time, rate FROM funding_rates WHERE exchange = ? AND symbol = ?"
        params: list = [exchange, symbol]
        if start is not None:
            sql += " AND time >= ?"
            params.append(_naive(start))
        if end is not None:
            sql += " AND time < ?"
            params.append(_naive(end))
        frame = self._query(sql + " ORDER BY time", params)
        frame["time"] = pd.to_datetime(frame["time"]).dt.tz_localize("UTC")
        return frame

    def _funding_coverage(self):
        if "funding_rates" not in self._tables:
            return pd.DataFrame(columns=["exchange", "symbol", "first", "last", "rows"])
        return self._query(
            """SELECT exchange, symbol, min(time) AS first, max(time) AS last, count(*) AS rows
               FROM funding_rates GROUP BY exchange, symbol"""
        )

    def _upsert_funding_sync(self, exchange, symbol, start, end, at):
        self._transaction(
            lambda con: con.execute(
                """INSERT INTO funding_sync VALUES (?, ?, ?, ?, ?)
               ON CONFLICT (exchange, symbol) DO UPDATE SET
                 synced_start = least(funding_sync.synced_start, excluded.synced_start),
                 synced_end = greatest(funding_sync.synced_end, excluded.synced_end),
                 synced_at = excluded.synced_at""",
                [exchange, symbol, _naive(start), _naive(end), _naive(at)],
            )
        )

    def _select_funding_sync(self, exchange, symbol):
        if "funding_sync" not in self._tables:
            return None
        rows = self._con_rows("SELECT synced_start, synced_end FROM funding_sync WHERE exchange = ? AND symbol = ?",
                              [exchange, symbol])
        return (_utc(rows[0][0]), _utc(rows[0][1])) if rows else None

    def _trading_write(self, statements):
        def work(con):
            for sql, params in statements:
                con.execute(sql, params)

        self._transaction(work)

    def _trading_rows(self, sql, params):
        return self._con_rows(sql, params)

    def _has_trading_tables(self) -> bool:
        return "service_state" in self._tables

    def close(self):
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    # ---- helpers --------------------------------------------------------------------------------------------
    def _columns(self) -> dict[str, set[str]]:
        """Column names per table, to read an older store opened read-only as it is."""
        rows = self._con.execute("SELECT table_name, column_name FROM information_schema.columns").fetchall()
        tables: dict[str, set[str]] = {}
        for table, column in rows:
            tables.setdefault(table, set()).add(column)
        return tables

    def _con_rows(self, sql: str, params=None) -> list[tuple]:
        try:
            return self._con.execute(sql, params or []).fetchall()
        except duckdb.Error as exc:
            raise StoreError(f"reading DuckDB store {self.path} failed: {_first_line(exc)}") from exc

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
