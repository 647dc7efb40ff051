"""PostgreSQL store, a TimescaleDB hypertable when the server offers the extension.

Same tables and semantics as the DuckDB backend; times are ``TIMESTAMPTZ``. Every write is one transaction:
bars are COPYed into a temporary table and merged with ``INSERT ... ON CONFLICT DO UPDATE``, so a failure
leaves what was stored before untouched. NaN prices are stored as NULL, as DuckDB does. Opening a store creates
what is missing and migrates older tables in place (``MIGRATIONS``), under the schema lock.
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import pandas as pd
import psycopg
from psycopg.conninfo import conninfo_to_dict

from marketsynth.data.bars import BAR_COLUMNS, empty_bars
from marketsynth.data.store.base import COVERAGE_COLUMNS, OLD_GAP_REASON, SCHEMA_VERSION, TIMEFRAME_ROWS, Store
from marketsynth.data.store.trading import TRADING_SCHEMA
from marketsynth.errors import ConfigError, StoreError

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS timeframes (name TEXT PRIMARY KEY, seconds BIGINT, pandas_freq TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bars (
    exchange TEXT NOT NULL, symbol TEXT NOT NULL, timeframe TEXT NOT NULL, time TIMESTAMPTZ NOT NULL,
    open DOUBLE PRECISION, high DOUBLE PRECISION, low DOUBLE PRECISION, close DOUBLE PRECISION,
    volume DOUBLE PRECISION,
    PRIMARY KEY (exchange, symbol, timeframe, time));
CREATE TABLE IF NOT EXISTS known_gaps (
    exchange TEXT NOT NULL, symbol TEXT NOT NULL, timeframe TEXT NOT NULL,
    start_time TIMESTAMPTZ NOT NULL, end_time TIMESTAMPTZ NOT NULL, recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (exchange, symbol, timeframe, start_time));
CREATE TABLE IF NOT EXISTS sync_state (
    exchange TEXT NOT NULL, symbol TEXT NOT NULL, timeframe TEXT NOT NULL,
    synced_start TIMESTAMPTZ NOT NULL, synced_end TIMESTAMPTZ NOT NULL, synced_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (exchange, symbol, timeframe));
CREATE TABLE IF NOT EXISTS funding_rates (
    exchange TEXT NOT NULL, symbol TEXT NOT NULL, time TIMESTAMPTZ NOT NULL, rate DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (exchange, symbol, time));
CREATE TABLE IF NOT EXISTS funding_sync (
    exchange TEXT NOT NULL, symbol TEXT NOT NULL,
    synced_start TIMESTAMPTZ NOT NULL, synced_end TIMESTAMPTZ NOT NULL, synced_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (exchange, symbol));
"""
# Version 1 stores lack the reason of known gaps; added in place, old rows get the default.
MIGRATIONS = f"""
ALTER TABLE known_gaps ADD COLUMN IF NOT EXISTS reason TEXT NOT NULL DEFAULT '{OLD_GAP_REASON}';
"""
GAP_COLUMNS = "exchange, symbol, timeframe, start_time, end_time, recorded_at, reason"
# Serialises schema creation when several processes open a fresh database at once.
SCHEMA_LOCK_KEY = 0x6D61726B65747379  # "marketsy"

PRICES = BAR_COLUMNS[1:]
INCOMING = """CREATE TEMP TABLE incoming_bars (time TIMESTAMPTZ NOT NULL,
    open FLOAT8, high FLOAT8, low FLOAT8, close FLOAT8, volume FLOAT8) ON COMMIT DROP"""
MERGE = f"""
INSERT INTO bars (exchange, symbol, timeframe, time, {", ".join(PRICES)})
SELECT %s, %s, %s, time, {", ".join(f"NULLIF({c}, 'NaN')" for c in PRICES)} FROM incoming_bars
ON CONFLICT (exchange, symbol, timeframe, time) DO UPDATE SET
  {", ".join(f"{c} = excluded.{c}" for c in PRICES)}
WHERE ({", ".join(f"bars.{c}" for c in PRICES)})
  IS DISTINCT FROM ({", ".join(f"excluded.{c}" for c in PRICES)})
"""

# ---- TimescaleDB ------------------------------------------------------------------------------------------
_INTERVAL = re.compile(
    r"^\s*\d+\s*(microseconds?|milliseconds?|seconds?|minutes?|hours?|days?|weeks?|months?|years?)\s*$", re.I)


def _interval(text: str, what: str) -> str:
    """A quoted SQL interval literal; rejects anything that is not ``<number> <unit>``."""
    if not _INTERVAL.match(str(text)):
        raise ConfigError(f"{what} '{text}' is not an interval; write e.g. '30 days' or '5 years'")
    return f"INTERVAL '{text.strip()}'"


def timescale_statements(*, convert: bool, chunk_interval: str = "30 days", compress_after: str = "30 days",
                         retention: str | None = None) -> list[str]:
    """What turns ``bars`` into a compressed hypertable (``convert``) and (re)applies its policies.

    The primary key includes ``time``, as TimescaleDB requires of unique keys on a hypertable. Compression is
    segmented by series and ordered by time, so reading one series' range decompresses only that series.
    Policies use ``if_not_exists``: re-opening a store never fails, but also never changes an existing policy.
    Upserts into already compressed chunks (re-fetching old bars) need TimescaleDB 2.11 or later.
    """
    statements = []
    if convert:
        statements += [
            "SELECT create_hypertable('bars', 'time', "
            f"chunk_time_interval => {_interval(chunk_interval, 'chunk interval')}, "
            "if_not_exists => TRUE, migrate_data => TRUE)",
            "ALTER TABLE bars SET (timescaledb.compress, "
            "timescaledb.compress_segmentby = 'exchange, symbol, timeframe', "
            "timescaledb.compress_orderby = 'time')",
        ]
    age = _interval(compress_after, "compression age")
    statements.append(
        f"SELECT add_compression_policy('bars', compress_after => {age}, if_not_exists => TRUE)")
    if retention:
        statements.append("SELECT add_retention_policy('bars', "
                          f"drop_after => {_interval(retention, 'retention')}, if_not_exists => TRUE)")
    return statements


def enable_timescale(cur, **options) -> bool:
    """Use TimescaleDB when the server has it; False (plain tables) when it is absent or cannot be enabled."""
    cur.execute("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')")
    if not cur.fetchone()[0]:
        return False
    try:
        with cur.connection.transaction():  # a savepoint: a failure here must not undo the plain schema
            cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            cur.execute("SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables "
                        "WHERE hypertable_name = 'bars' AND hypertable_schema = current_schema())")
            convert = not cur.fetchone()[0]
            for statement in timescale_statements(convert=convert, **options):
                cur.execute(statement)
    except psycopg.Error as exc:
        log.warning("TimescaleDB is installed but could not be enabled (%s); using plain PostgreSQL tables",
                    _first_line(exc))
        return False
    return True


# ---- the store -------------------------------------------------------------------------------------------
class PostgresStore(Store):
    """Candles in PostgreSQL. ``backend_kind`` says whether ``bars`` is a TimescaleDB hypertable.

    ``retention`` (e.g. ``"5 years"``) drops chunks whose bars are older than that; only with TimescaleDB, off
    by default. ``url`` keeps the address with the password masked, safe to print.
    """

    def __init__(self, url: str, *, retention: str | None = None, chunk_interval: str = "30 days",
                 compress_after: str = "30 days", connect_timeout: int = 5) -> None:
        super().__init__()
        self._dsn = url
        self._timeout = connect_timeout
        self.url = mask_password(url)
        self.location = describe(url)
        timescale = dict(retention=retention, chunk_interval=chunk_interval, compress_after=compress_after)
        timescale_statements(convert=True, **timescale)  # reject bad intervals before touching the server
        self._conn: psycopg.Connection | None = self._connect()
        try:
            with self._errors("preparing"):
                self.backend_kind = self._create_schema(timescale)
        except BaseException:
            self.close()
            raise
        if retention and self.backend_kind != "timescaledb":
            log.warning("retention '%s' needs TimescaleDB, which %s lacks; keeping all bars", retention,
                        self.location)

    # ---- backend hooks ------------------------------------------------------------------------------------
    def _upsert(self, exchange, symbol, timeframe, bars):
        columns = [bars["time"].dt.to_pydatetime(), *(bars[c].to_numpy() for c in PRICES)]

        def work(cur):
            cur.execute(INCOMING)
            with cur.copy("COPY incoming_bars FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["timestamptz"] + ["float8"] * len(PRICES))
                for row in zip(*columns, strict=True):
                    copy.write_row(row)
            cur.execute(MERGE, [exchange, symbol, timeframe])

        self._write(work)

    def _select(self, exchange, symbol, timeframe, start, end):
        # Times travel as integer microseconds: building tz-aware datetimes row by row costs twice as much.
        sql = (f"SELECT (extract(epoch FROM time) * 1000000)::int8, {', '.join(PRICES)} FROM bars "
               "WHERE exchange = %s AND symbol = %s AND timeframe = %s")
        params: list = [exchange, symbol, timeframe]
        if start is not None:
            sql += " AND time >= %s"
            params.append(start.to_pydatetime())
        if end is not None:
            sql += " AND time < %s"
            params.append(end.to_pydatetime())
        rows = self._fetch(sql + " ORDER BY time", params)
        if not rows:
            return empty_bars()
        frame = pd.DataFrame.from_records(rows, columns=BAR_COLUMNS, coerce_float=True)
        frame["time"] = pd.to_datetime(frame["time"], unit="us", utc=True)
        return frame

    def _coverage(self):
        rows = self._fetch("""SELECT exchange, symbol, timeframe, min(time), max(time), count(*)
                              FROM bars GROUP BY exchange, symbol, timeframe""")
        return pd.DataFrame.from_records(rows, columns=COVERAGE_COLUMNS)

    def _insert_missing(self, exchange, symbol, timeframe, ranges, at, reason):
        rows = [(exchange, symbol, timeframe, lo.to_pydatetime(), hi.to_pydatetime(), at.to_pydatetime(), reason)
                for lo, hi in ranges]
        self._write(lambda cur: cur.executemany(
            f"""INSERT INTO known_gaps ({GAP_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (exchange, symbol, timeframe, start_time) DO UPDATE SET
                 end_time = greatest(known_gaps.end_time, excluded.end_time),
                 recorded_at = excluded.recorded_at, reason = excluded.reason""",
            rows))

    def _select_known_gaps(self, exchange, symbol, timeframe):
        filters = [(name, value) for name, value in (("exchange", exchange), ("symbol", symbol),
                                                     ("timeframe", timeframe)) if value is not None]
        sql = f"SELECT {GAP_COLUMNS} FROM known_gaps"
        if filters:
            sql += " WHERE " + " AND ".join(f"{name} = %s" for name, _ in filters)
        return self._fetch(sql, [value for _, value in filters])

    def _replace_missing(self, exchange, symbol, timeframe, remove_starts, add_rows):
        def work(cur):
            cur.executemany(
                "DELETE FROM known_gaps WHERE exchange = %s AND symbol = %s AND timeframe = %s AND start_time = %s",
                [(exchange, symbol, timeframe, start.to_pydatetime()) for start in remove_starts])
            if add_rows:
                cur.executemany(
                    f"INSERT INTO known_gaps ({GAP_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [(exchange, symbol, timeframe, lo.to_pydatetime(), hi.to_pydatetime(), at.to_pydatetime(), reason)
                     for lo, hi, at, reason in add_rows])

        self._write(work)

    def _upsert_funding(self, exchange, symbol, rates):
        rows = [(exchange, symbol, t, r) for t, r in zip(rates["time"].dt.to_pydatetime(), rates["rate"].tolist(),
                                                         strict=True)]
        self._write(lambda cur: cur.executemany(
            """INSERT INTO funding_rates VALUES (%s, %s, %s, %s)
               ON CONFLICT (exchange, symbol, time) DO UPDATE SET rate = excluded.rate
               WHERE funding_rates.rate IS DISTINCT FROM excluded.rate""",
            rows))

    def _select_funding(self, exchange, symbol, start, end):
        sql = ("SELECT (extract(epoch FROM time) * 1000000)::int8, rate FROM funding_rates "
               "WHERE exchange = %s AND symbol = %s")
        params: list = [exchange, symbol]
        if start is not None:
            sql += " AND time >= %s"
            params.append(start.to_pydatetime())
        if end is not None:
            sql += " AND time < %s"
            params.append(end.to_pydatetime())
        rows = self._fetch(sql + " ORDER BY time", params)
        frame = pd.DataFrame.from_records(rows, columns=["time", "rate"], coerce_float=True)
        frame["time"] = pd.to_datetime(frame["time"].astype("int64"), unit="us", utc=True)
        return frame

    def _funding_coverage(self):
        rows = self._fetch("""SELECT exchange, symbol, min(time), max(time), count(*)
                              FROM funding_rates GROUP BY exchange, symbol""")
        return pd.DataFrame.from_records(rows, columns=["exchange", "symbol", "first", "last", "rows"])

    def _upsert_funding_sync(self, exchange, symbol, start, end, at):
        self._write(lambda cur: cur.execute(
            """INSERT INTO funding_sync VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT (exchange, symbol) DO UPDATE SET
                 synced_start = least(funding_sync.synced_start, excluded.synced_start),
                 synced_end = greatest(funding_sync.synced_end, excluded.synced_end),
                 synced_at = excluded.synced_at""",
            [exchange, symbol, start.to_pydatetime(), end.to_pydatetime(), at.to_pydatetime()]))

    def _select_funding_sync(self, exchange, symbol):
        rows = self._fetch("SELECT synced_start, synced_end FROM funding_sync WHERE exchange = %s AND symbol = %s",
                           [exchange, symbol])
        return rows[0] if rows else None

    def _upsert_sync_state(self, exchange, symbol, timeframe, start, end, at):
        self._write(lambda cur: cur.execute(
            """INSERT INTO sync_state VALUES (%s, %s, %s, %s, %s, %s)
               ON CONFLICT (exchange, symbol, timeframe) DO UPDATE SET
                 synced_start = least(sync_state.synced_start, excluded.synced_start),
                 synced_end = greatest(sync_state.synced_end, excluded.synced_end),
                 synced_at = excluded.synced_at""",
            [exchange, symbol, timeframe, start.to_pydatetime(), end.to_pydatetime(), at.to_pydatetime()]))

    def _select_sync_state(self):
        columns = ["exchange", "symbol", "timeframe", "synced_start", "synced_end", "synced_at"]
        rows = self._fetch(f"SELECT {', '.join(columns)} FROM sync_state")
        return pd.DataFrame.from_records(rows, columns=columns)

    def _trading_write(self, statements):
        def work(cur):
            for sql, params in statements:
                cur.execute(sql.replace("?", "%s"), params)

        self._write(work)

    def _trading_rows(self, sql, params):
        return self._fetch(sql.replace("?", "%s"), params)

    def close(self):
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r}, backend_kind={getattr(self, 'backend_kind', None)!r})"

    # ---- helpers ------------------------------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection:
        # Explicit settings in the URL win over the default timeout.
        options = {} if "connect_timeout" in _conninfo(self._dsn) else {"connect_timeout": self._timeout}
        try:
            conn = psycopg.connect(self._dsn, autocommit=True, **options)
        except (psycopg.Error, ValueError) as exc:
            cause = _first_line(exc).replace(_conninfo(self._dsn).get("password") or "\0", "***")
            raise StoreError(f"cannot connect to PostgreSQL at {self.location}: {cause}; "
                             "check the URL and that the server is running") from exc
        conn.execute("SET TIME ZONE 'UTC'")
        return conn

    def _create_schema(self, timescale: dict) -> str:
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [SCHEMA_LOCK_KEY])
            cur.execute(SCHEMA)
            cur.execute(MIGRATIONS)
            for statement in TRADING_SCHEMA:
                cur.execute(statement)
            cur.executemany("INSERT INTO timeframes VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                            TIMEFRAME_ROWS)
            cur.execute("INSERT INTO store_meta VALUES ('schema_version', %s) ON CONFLICT (key) DO UPDATE SET "
                        "value = greatest(store_meta.value::int, excluded.value::int)::text",
                        [str(SCHEMA_VERSION)])
            return "timescaledb" if enable_timescale(cur, **timescale) else "postgresql"

    def _write(self, work) -> None:
        """Run ``work(cursor)`` in one transaction: committed on success, rolled back on any exception."""

        def attempt():
            with self._conn.transaction(), self._conn.cursor() as cur:
                work(cur)

        with self._errors("writing"):
            self._retrying(attempt)

    def _fetch(self, sql: str, params=None) -> list[tuple]:
        def attempt():
            with self._conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()

        with self._errors("reading"):
            return self._retrying(attempt)

    def _retrying(self, attempt):
        """Once more on a fresh connection when the old one broke (server restart, dropped network).

        Safe for writes too: a transaction cut off is rolled back, and every write here is an idempotent
        upsert.
        """
        if self._conn is None:
            raise StoreError(f"PostgreSQL store {self.location} is closed; open it again")
        try:
            return attempt()
        except psycopg.OperationalError:
            if not self._conn.broken:
                raise
            self._conn.close()
            self._conn = self._connect()
            return attempt()

    @contextmanager
    def _errors(self, action: str):
        try:
            yield
        except psycopg.Error as exc:
            outcome = " failed, nothing was changed: " if action == "writing" else " failed: "
            raise StoreError(f"{action} PostgreSQL store {self.location}{outcome}{_first_line(exc)}") from exc


# ---- URLs ------------------------------------------------------------------------------------------------
def _conninfo(url: str) -> dict:
    try:
        return conninfo_to_dict(url)
    except psycopg.Error:
        return {}


def describe(url: str) -> str:
    """``HOST:PORT/DB`` for messages; never the user or password."""
    info = _conninfo(url)
    if not info:  # unparsable: take what we can from the URL itself
        parts = urlsplit(url)
        info = {"host": parts.netloc.rpartition("@")[2], "dbname": parts.path.lstrip("/")}
        info["host"], _, info["port"] = info["host"].partition(":")
    host = info.get("host") or "localhost"
    return f"{host}:{info.get('port') or 5432}/{info.get('dbname') or info.get('user') or ''}"


def mask_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc))


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
