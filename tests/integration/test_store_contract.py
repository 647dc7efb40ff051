"""One contract for every Store backend: a DuckDB file and a real PostgreSQL server (started for the session).

The PostgreSQL-only part at the end covers connection errors, reconnects and the TimescaleDB set-up, which is
checked as generated SQL because the test server has no TimescaleDB extension.
"""

from __future__ import annotations

import contextlib
import threading

import duckdb
import numpy as np
import pandas as pd
import psycopg
import pytest

from marketsynth.data.bars import BAR_COLUMNS, TIME_DTYPE, as_bars
from marketsynth.data.store import Gap, open_store
from marketsynth.data.store import duckdb as duckdb_backend
from marketsynth.data.store.base import COVERAGE_COLUMNS, KNOWN_GAP_COLUMNS, OLD_GAP_REASON
from marketsynth.data.store.postgres import PostgresStore, enable_timescale, timescale_statements
from marketsynth.data.store.trading import TRADING_TABLES
from marketsynth.errors import ConfigError, StoreError
from tests.fixtures.postgres import PASSWORD, PASSWORD_USER, _free_port

T0 = pd.Timestamp("2024-03-01", tz="UTC")
HOUR = pd.Timedelta(hours=1)


def make_bars(n: int, start=T0, step=HOUR, seed: int = 0) -> pd.DataFrame:
    """Bars with awkward floats (long mantissas, tiny and huge values) to prove the round trip is exact."""
    rng = np.random.default_rng(seed)
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return pd.DataFrame({
        "time": pd.date_range(start, periods=n, freq=step).as_unit("us"),
        "open": close * (1 + rng.normal(0, 1e-3, n)),
        "high": close * 1.01 + 1e-9,
        "low": close * 0.99 - 1 / 3,
        "close": close,
        "volume": rng.lognormal(0, 3, n) * 1e-7,
    })


# ---- one store per backend ---------------------------------------------------------------------------------
@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request) -> str:
    return request.param


@pytest.fixture
def target(request, backend, tmp_path) -> str:
    """Where the store under test lives: a DuckDB file or the URL of a fresh PostgreSQL database."""
    if backend == "duckdb":
        return str(tmp_path / "store.duckdb")
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
def reopen(target):
    """Open (again) the store at ``target``; everything opened is closed after the test."""
    opened = []

    def _open():
        opened.append(open_store(target))
        return opened[-1]

    yield _open
    for store in opened:
        store.close()


@pytest.fixture
def store(reopen):
    return reopen()


def assert_same_bars(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(actual.columns) == BAR_COLUMNS
    assert str(actual["time"].dtype) == TIME_DTYPE
    pd.testing.assert_frame_equal(actual.reset_index(drop=True), as_bars(expected), check_exact=True)


# ---- candles -----------------------------------------------------------------------------------------------
def test_round_trip_is_exact(store, backend):
    bars = make_bars(500)
    assert store.write_bars("bybit", "BTCUSDT", "1h", bars) == 500
    back = store.read_bars("bybit", "BTCUSDT", "1h")
    assert_same_bars(back, bars)
    assert all(back[c].dtype == np.float64 for c in BAR_COLUMNS[1:])
    assert back["time"].dt.tz is not None and str(back["time"].dt.tz) == "UTC"


def test_times_in_other_zones_and_epoch_ms_are_stored_as_utc(store):
    utc = make_bars(3)
    in_tokyo = utc.assign(time=utc["time"].dt.tz_convert("Asia/Tokyo"))
    store.write_bars("bybit", "BTCUSDT", "1h", in_tokyo)
    as_ms = utc.assign(time=utc["time"].astype("int64") // 1000, close=utc["close"] + 1)  # us -> ms
    store.write_bars("bybit", "BTCUSDT", "1h", as_ms)
    back = store.read_bars("bybit", "BTCUSDT", "1h")
    assert list(back["time"]) == list(utc["time"])
    assert (back["close"] == utc["close"] + 1).all()


def test_nan_survives_and_empty_frames_write_nothing(store):
    bars = make_bars(3)
    bars.loc[1, "volume"] = np.nan
    bars["open"] = bars["open"].astype(object)
    bars.loc[2, "open"] = "not a number"  # as_bars coerces it to NaN
    store.write_bars("bybit", "BTCUSDT", "1h", bars)
    back = store.read_bars("bybit", "BTCUSDT", "1h")
    assert np.isnan(back.loc[1, "volume"]) and np.isnan(back.loc[2, "open"])
    assert back.loc[0].notna().all()
    assert store.write_bars("bybit", "BTCUSDT", "1h", bars.iloc[:0]) == 0


def test_read_of_unknown_series_is_empty_and_typed(store):
    back = store.read_bars("bybit", "NOPE", "1h")
    assert back.empty and list(back.columns) == BAR_COLUMNS and str(back["time"].dtype) == TIME_DTYPE
    assert store.coverage().empty and list(store.coverage().columns) == COVERAGE_COLUMNS


def test_upsert_is_idempotent_and_updates_rewritten_bars(store):
    first = make_bars(100)
    store.write_bars("bybit", "BTCUSDT", "1h", first)
    store.write_bars("bybit", "BTCUSDT", "1h", first)
    assert_same_bars(store.read_bars("bybit", "BTCUSDT", "1h"), first)

    overlap = make_bars(100, start=T0 + 50 * HOUR, seed=1)  # bars 50..149, new values for 50..99
    store.write_bars("bybit", "BTCUSDT", "1h", overlap)
    expected = pd.concat([first.iloc[:50], overlap])
    back = store.read_bars("bybit", "BTCUSDT", "1h")
    assert_same_bars(back, expected)
    assert back["time"].is_unique and len(back) == 150
    assert store.coverage()["rows"].tolist() == [150]


def test_read_range_is_start_inclusive_end_exclusive(store):
    bars = make_bars(48)
    store.write_bars("bybit", "BTCUSDT", "1h", bars)
    start, end = T0 + 10 * HOUR, T0 + 20 * HOUR
    assert_same_bars(store.read_bars("bybit", "BTCUSDT", "1h", start, end), bars.iloc[10:20])
    assert_same_bars(store.read_bars("bybit", "BTCUSDT", "1h", start=start), bars.iloc[10:])
    assert_same_bars(store.read_bars("bybit", "BTCUSDT", "1h", end=end), bars.iloc[:20])
    # naive means UTC; other zones are converted; strings work
    naive = (start.tz_localize(None), end.tz_localize(None))
    assert len(store.read_bars("bybit", "BTCUSDT", "1h", *naive)) == 10
    assert len(store.read_bars("bybit", "BTCUSDT", "1h", start.tz_convert("America/New_York"), end)) == 10
    assert len(store.read_bars("bybit", "BTCUSDT", "1h", "2024-03-01 10:00", "2024-03-01 20:00")) == 10
    assert store.read_bars("bybit", "BTCUSDT", "1h", end, start).empty
    assert store.read_bars("bybit", "BTCUSDT", "1h", start, start).empty


def test_timeframe_spellings_and_symbol_case_name_one_series(store):
    bars = make_bars(10)
    store.write_bars("bybit", "btcusdt", "60", bars)
    for symbol in ("BTCUSDT", "btcusdt", "BtcUsdt"):
        for timeframe in ("1h", "60", "60m"):
            assert_same_bars(store.read_bars("bybit", symbol, timeframe), bars)
    store.write_bars("bybit", "BTCUSDT", "1h", bars)  # same series: no duplicates
    cov = store.coverage()
    assert cov[["symbol", "timeframe", "rows"]].values.tolist() == [["BTCUSDT", "1h", 10]]
    assert store.exchanges_for("btcusdt", "60") == ["bybit"]


def test_exchanges_symbols_and_timeframes_do_not_mix(store):
    series = {
        ("binance", "BTCUSDT", "1h"): make_bars(30, seed=1),
        ("bybit", "BTCUSDT", "1h"): make_bars(20, seed=2),
        ("bybit", "ETHUSDT", "1h"): make_bars(10, seed=3),
        ("bybit", "BTCUSDT", "1d"): make_bars(5, step=pd.Timedelta(days=1), seed=4),
    }
    for (exchange, symbol, timeframe), bars in series.items():
        store.write_bars(exchange, symbol, timeframe, bars)
    for (exchange, symbol, timeframe), bars in series.items():
        assert_same_bars(store.read_bars(exchange, symbol, timeframe), bars)

    cov = store.coverage()
    assert cov[["exchange", "symbol", "timeframe"]].values.tolist() == [
        ["binance", "BTCUSDT", "1h"], ["bybit", "BTCUSDT", "1d"], ["bybit", "BTCUSDT", "1h"],
        ["bybit", "ETHUSDT", "1h"]]
    assert cov["rows"].tolist() == [30, 5, 20, 10]
    assert cov["rows"].dtype == np.int64
    assert list(cov["first"]) == [T0] * 4
    assert list(cov["last"]) == [T0 + 29 * HOUR, T0 + pd.Timedelta(days=4), T0 + 19 * HOUR, T0 + 9 * HOUR]
    assert str(cov["first"].dt.tz) == "UTC"
    assert store.exchanges_for("BTCUSDT", "1h") == ["binance", "bybit"]


def test_data_persists_across_reopening(store, reopen):
    bars = make_bars(24)
    store.write_bars("bybit", "BTCUSDT", "1h", bars)
    store.record_missing("bybit", "BTCUSDT", "1h", [(T0 - 5 * HOUR, T0)])
    store.mark_synced("bybit", "BTCUSDT", "1h", T0, T0 + 24 * HOUR)
    store.close()
    again = reopen()  # the schema set-up runs again and must keep everything
    assert_same_bars(again.read_bars("bybit", "BTCUSDT", "1h"), bars)
    assert again.known_missing("bybit", "BTCUSDT", "1h") == [(T0 - 5 * HOUR, T0)]
    assert len(again.sync_state()) == 1


# ---- gaps and sync state -----------------------------------------------------------------------------------
def test_gaps_with_and_without_known_gaps(store):
    bars = make_bars(24).drop(index=[3, 4, 10])  # holes: bars 3-4 and 10
    store.write_bars("bybit", "BTCUSDT", "1h", bars)
    hole_a = Gap(T0 + 3 * HOUR, T0 + 5 * HOUR, 2)
    hole_b = Gap(T0 + 10 * HOUR, T0 + 11 * HOUR, 1)
    assert store.gaps("bybit", "BTCUSDT", "1h") == [hole_a, hole_b]

    # an explicit range also reports what is missing before the first and after the last bar
    assert store.gaps("bybit", "BTCUSDT", "1h", T0 - 2 * HOUR, T0 + 26 * HOUR) == [
        Gap(T0 - 2 * HOUR, T0, 2), hole_a, hole_b, Gap(T0 + 24 * HOUR, T0 + 26 * HOUR, 2)]
    assert store.gaps("bybit", "BTCUSDT", "1h", T0 + 5 * HOUR, T0 + 10 * HOUR) == []

    store.record_missing("BYBIT".lower(), "btcusdt", "60", [(T0 + 3 * HOUR, T0 + 5 * HOUR)])
    assert store.known_missing("bybit", "BTCUSDT", "1h") == [(T0 + 3 * HOUR, T0 + 5 * HOUR)]
    assert store.gaps("bybit", "BTCUSDT", "1h") == [hole_b]
    assert store.gaps("bybit", "BTCUSDT", "1h", include_known=True) == [hole_a, hole_b]

    # the same start again widens the range; empty ranges are ignored; other series see nothing
    store.record_missing("bybit", "BTCUSDT", "1h", [(T0 + 3 * HOUR, T0 + 4 * HOUR), (T0, T0)])
    assert store.known_missing("bybit", "BTCUSDT", "1h") == [(T0 + 3 * HOUR, T0 + 5 * HOUR)]
    store.record_missing("bybit", "BTCUSDT", "1h", [(T0 + 3 * HOUR, T0 + 11 * HOUR)])
    assert store.gaps("bybit", "BTCUSDT", "1h") == []
    assert store.known_missing("bybit", "ETHUSDT", "1h") == []
    assert store.known_missing("binance", "BTCUSDT", "1h") == []


def test_sync_state_widens_per_series(store):
    assert store.sync_state().empty
    assert list(store.sync_state().columns) == [
        "exchange", "symbol", "timeframe", "synced_start", "synced_end", "synced_at"]
    day = pd.Timedelta(days=1)
    store.mark_synced("bybit", "btcusdt", "60", T0, T0 + 2 * day)
    first_at = store.sync_state()["synced_at"].iloc[0]
    store.mark_synced("bybit", "BTCUSDT", "1h", T0 + day, T0 + 5 * day)  # later end widens
    store.mark_synced("bybit", "BTCUSDT", "1h", T0 - day, T0)  # earlier start widens
    store.mark_synced("bybit", "BTCUSDT", "1h", T0, T0 + day)  # inside: no change
    store.mark_synced("binance", "BTCUSDT", "1h", T0 + 9 * day, T0 + 10 * day)

    state = store.sync_state().sort_values("exchange").reset_index(drop=True)
    assert state[["exchange", "symbol", "timeframe"]].values.tolist() == [
        ["binance", "BTCUSDT", "1h"], ["bybit", "BTCUSDT", "1h"]]
    assert list(state["synced_start"]) == [T0 + 9 * day, T0 - day]
    assert list(state["synced_end"]) == [T0 + 10 * day, T0 + 5 * day]
    assert str(state["synced_at"].dt.tz) == "UTC"
    assert state["synced_at"].iloc[1] >= first_at
    assert abs(pd.Timestamp.now(tz="UTC") - state["synced_at"].iloc[1]) < pd.Timedelta(minutes=5)


def test_known_gaps_carry_when_and_why(store):
    before = pd.Timestamp.now(tz="UTC")
    store.record_missing("bybit", "BTCUSDT", "1h", [(T0, T0 + 5 * HOUR)], reason="before listing")
    store.record_missing("bybit", "BTCUSDT", "1h", [(T0 + 9 * HOUR, T0 + 10 * HOUR)])
    store.record_missing("binance", "ETHUSDT", "1d", [(T0, T0 + pd.Timedelta(days=2))], reason="outage")
    gaps = store.known_gaps()
    assert list(gaps.columns) == KNOWN_GAP_COLUMNS
    assert gaps[["exchange", "symbol", "timeframe"]].values.tolist() == [
        ["binance", "ETHUSDT", "1d"], ["bybit", "BTCUSDT", "1h"], ["bybit", "BTCUSDT", "1h"]]
    assert list(gaps.reason) == ["outage", "before listing", "the exchange answered without these candles"]
    assert all(str(gaps[c].dt.tz) == "UTC" for c in ("start", "end", "recorded_at"))
    assert ((gaps.recorded_at >= before.floor("ms")) & (gaps.recorded_at <= pd.Timestamp.now(tz="UTC"))).all()
    one = store.known_gaps("BYBIT".lower(), "btcusdt", "60")
    assert list(zip(one.start, one.end, strict=True)) == [(T0, T0 + 5 * HOUR), (T0 + 9 * HOUR, T0 + 10 * HOUR)]
    assert store.known_gaps("bybit", "NOPE", "1h").empty and list(store.known_gaps("x").columns) == KNOWN_GAP_COLUMNS
    # recording the same start again widens the gap and renews its stamp and reason
    store.record_missing("bybit", "BTCUSDT", "1h", [(T0, T0 + 6 * HOUR)], reason="asked again")
    again = store.known_gaps("bybit", "BTCUSDT", "1h").iloc[0]
    assert (again.end, again.reason) == (T0 + 6 * HOUR, "asked again") and again.recorded_at >= one.recorded_at[0]


def test_forget_missing_trims_what_reaches_outside_the_range(store, reopen):
    store.record_missing("bybit", "BTCUSDT", "1h", [(T0, T0 + 10 * HOUR)], reason="old")
    store.record_missing("bybit", "BTCUSDT", "1h", [(T0 + 20 * HOUR, T0 + 22 * HOUR)], reason="other")
    store.record_missing("bybit", "ETHUSDT", "1h", [(T0, T0 + 10 * HOUR)])
    stamp = store.known_gaps("bybit", "BTCUSDT", "1h").recorded_at[0]
    forgotten = store.forget_missing("bybit", "BTCUSDT", "1h", T0 + 4 * HOUR, T0 + 21 * HOUR)
    assert forgotten == [Gap(T0 + 4 * HOUR, T0 + 10 * HOUR, 6), Gap(T0 + 20 * HOUR, T0 + 21 * HOUR, 1)]
    store.close()
    gaps = reopen().known_gaps("bybit", "BTCUSDT", "1h")
    assert list(zip(gaps.start, gaps.end, gaps.reason, strict=True)) == [
        (T0, T0 + 4 * HOUR, "old"), (T0 + 21 * HOUR, T0 + 22 * HOUR, "other")]
    assert gaps.recorded_at[0] == stamp, "the part kept keeps when it was recorded"
    again = reopen()
    assert len(again.known_gaps("bybit", "ETHUSDT", "1h")) == 1
    assert [g.bars for g in again.forget_missing("bybit", "BTCUSDT", "1h")] == [4, 1]
    assert again.known_gaps("bybit", "BTCUSDT", "1h").empty
    assert again.forget_missing("bybit", "BTCUSDT", "1h") == []


# Version 1 of the schema (before known gaps kept their reason and funding rates were stored).
V1_GAPS = {
    "duckdb": """
        CREATE TABLE store_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
        CREATE TABLE known_gaps (
            exchange VARCHAR NOT NULL, symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL,
            start_time TIMESTAMP NOT NULL, end_time TIMESTAMP NOT NULL, recorded_at TIMESTAMP NOT NULL,
            PRIMARY KEY (exchange, symbol, timeframe, start_time));
        INSERT INTO store_meta VALUES ('schema_version', '1');
        INSERT INTO known_gaps VALUES ('bybit', 'BTCUSDT', '1h', '2024-02-01 00:00', '2024-03-01 00:00',
                                       '2024-03-02 12:00');""",
    "postgres": """
        CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE known_gaps (
            exchange TEXT NOT NULL, symbol TEXT NOT NULL, timeframe TEXT NOT NULL,
            start_time TIMESTAMPTZ NOT NULL, end_time TIMESTAMPTZ NOT NULL, recorded_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (exchange, symbol, timeframe, start_time));
        INSERT INTO store_meta VALUES ('schema_version', '1');
        INSERT INTO known_gaps VALUES ('bybit', 'BTCUSDT', '1h', '2024-02-01 00:00+00', '2024-03-01 00:00+00',
                                       '2024-03-02 12:00+00');""",
}


def test_old_gap_tables_are_migrated_in_place(backend, target, reopen):
    if backend == "duckdb":
        with duckdb.connect(target) as con:
            con.execute(V1_GAPS["duckdb"])
        with open_store(target, read_only=True) as old:  # read-only: read as it is, nothing changed
            assert list(old.known_gaps().reason) == [OLD_GAP_REASON]
            assert old.read_funding("bybit", "BTCUSDT").empty and old.funding_synced("bybit", "BTCUSDT") is None
    else:
        with psycopg.connect(target, autocommit=True) as con:
            con.execute(V1_GAPS["postgres"])
    store = reopen()
    gaps = store.known_gaps()
    assert list(zip(gaps.start, gaps.end, gaps.recorded_at, gaps.reason, strict=True)) == [
        (T0 - pd.Timedelta(days=29), T0, pd.Timestamp("2024-03-02 12:00", tz="UTC"), OLD_GAP_REASON)]
    store.record_missing("bybit", "BTCUSDT", "1h", [(T0, T0 + HOUR)], reason="new")
    store.write_funding("bybit", "BTCUSDT", pd.DataFrame({"time": [T0], "rate": [1e-4]}))
    store.close()
    again = reopen()  # migrating twice changes nothing
    assert list(again.known_gaps().reason) == [OLD_GAP_REASON, "new"]
    assert len(again.read_funding("bybit", "BTCUSDT")) == 1
    if backend == "duckdb":
        version = again._con.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone()
    else:
        with psycopg.connect(target) as con:
            version = con.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone()
    assert version == ("2",)


# ---- funding rates -----------------------------------------------------------------------------------------
def make_funding(n: int, start=T0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"time": pd.date_range(start, periods=n, freq="8h").as_unit("us"),
                         "rate": np.round(rng.normal(1e-4, 3e-4, n), 8) / 3})


def test_funding_round_trip_is_exact_idempotent_and_ranged(store, reopen):
    rates = make_funding(300)
    assert store.write_funding("bybit", "btcusdt", rates) == 300
    assert store.write_funding("bybit", "BTCUSDT", rates) == 300  # again: nothing changes
    back = store.read_funding("bybit", "BTCUSDT")
    pd.testing.assert_frame_equal(back, rates, check_exact=True)
    assert str(back.time.dtype) == "datetime64[us, UTC]" and back.rate.dtype == np.float64
    lo, hi = rates.time[10], rates.time[20]
    pd.testing.assert_frame_equal(store.read_funding("bybit", "BTCUSDT", lo, hi),
                                  rates.iloc[10:20].reset_index(drop=True))
    assert len(store.read_funding("bybit", "BTCUSDT", start=lo)) == 290
    changed = make_funding(5, start=rates.time[298], seed=1)  # two updated, three new
    store.write_funding("bybit", "BTCUSDT", changed)
    store.write_funding("binance", "BTCUSDT", rates.iloc[:7])
    store.write_funding("bybit", "ETHUSDT", rates.iloc[:3])
    assert store.write_funding("bybit", "BTCUSDT", rates.iloc[:0]) == 0
    store.close()
    again = reopen()
    pd.testing.assert_frame_equal(again.read_funding("bybit", "BTCUSDT"),
                                  pd.concat([rates.iloc[:298], changed], ignore_index=True), check_exact=True)
    cov = again.funding_coverage()
    assert cov[["exchange", "symbol", "rows"]].values.tolist() == [
        ["binance", "BTCUSDT", 7], ["bybit", "BTCUSDT", 303], ["bybit", "ETHUSDT", 3]]
    assert list(cov["first"]) == [T0] * 3 and str(cov["last"].dt.tz) == "UTC"
    assert again.read_funding("bybit", "NOPE").empty
    assert list(again.read_funding("bybit", "NOPE").columns) == ["time", "rate"]


def test_funding_times_are_whole_seconds_and_epoch_ms_works(store):
    ms = [1_600_000_000_004, 1_600_028_800_000]  # Binance's fundingTime may carry a few ms past the hour
    store.write_funding("binance", "BTCUSDT", pd.DataFrame({"time": ms, "rate": ["0.0001", "-0.00025"]}))
    back = store.read_funding("binance", "BTCUSDT")
    assert list(back.time) == [pd.Timestamp("2020-09-13 12:26:40", tz="UTC"),
                               pd.Timestamp("2020-09-13 20:26:40", tz="UTC")]
    assert list(back.rate) == [0.0001, -0.00025]


def test_funding_sync_state_widens(store):
    assert store.funding_synced("bybit", "BTCUSDT") is None
    day = pd.Timedelta(days=1)
    store.mark_funding_synced("bybit", "btcusdt", T0, T0 + 2 * day)
    store.mark_funding_synced("bybit", "BTCUSDT", T0 + day, T0 + 5 * day)
    store.mark_funding_synced("bybit", "BTCUSDT", T0 - day, T0)
    store.mark_funding_synced("binance", "BTCUSDT", T0, T0 + day)
    assert store.funding_synced("bybit", "BTCUSDT") == (T0 - day, T0 + 5 * day)
    assert store.funding_synced("binance", "BTCUSDT") == (T0, T0 + day)


# ---- atomicity ---------------------------------------------------------------------------------------------
class InjectedDiskFailure(Exception):
    """Stands in for anything going wrong after the rows were already inserted inside the transaction."""


@contextlib.contextmanager
def fail_after_inserting_bars(backend: str, store, monkeypatch, error: BaseException):
    """Let ``INSERT INTO bars`` really run, then raise ``error`` while the transaction is still open."""
    if backend == "duckdb":
        real = store._con

        class Failing:
            def __getattr__(self, name):
                return getattr(real, name)

            def execute(self, sql, *args):
                result = real.execute(sql, *args)
                if "INSERT INTO bars" in sql:
                    raise error
                return result

        monkeypatch.setattr(store, "_con", Failing())
    else:
        real_execute = psycopg.Cursor.execute

        def execute(cur, query, *args, **kwargs):
            result = real_execute(cur, query, *args, **kwargs)
            if "INSERT INTO bars" in str(query):
                raise error
            return result

        monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    yield
    monkeypatch.undo()


def database_error(backend: str) -> Exception:
    return duckdb.IOException("injected disk failure") if backend == "duckdb" else psycopg.OperationalError(
        "injected disk failure")


@pytest.mark.parametrize("kind", ["database error", "other exception"])
def test_write_failing_inside_its_transaction_changes_nothing(store, backend, monkeypatch, kind):
    before = make_bars(50)
    store.write_bars("bybit", "BTCUSDT", "1h", before)
    store.write_bars("bybit", "ETHUSDT", "1h", before)
    coverage = store.coverage()
    update_and_extend = make_bars(50, start=T0 + 25 * HOUR, seed=7)

    if kind == "database error":
        error, expected = database_error(backend), StoreError
    else:
        error = expected = InjectedDiskFailure
    with fail_after_inserting_bars(backend, store, monkeypatch, error), pytest.raises(expected) as raised:
        store.write_bars("bybit", "BTCUSDT", "1h", update_and_extend)
    if expected is StoreError:
        message = str(raised.value)
        assert "nothing was changed" in message and "injected disk failure" in message
        assert "\n" not in message

    assert_same_bars(store.read_bars("bybit", "BTCUSDT", "1h"), before)
    pd.testing.assert_frame_equal(store.coverage(), coverage)
    # the store still works afterwards
    store.write_bars("bybit", "BTCUSDT", "1h", update_and_extend)
    assert_same_bars(store.read_bars("bybit", "BTCUSDT", "1h"),
                     pd.concat([before.iloc[:25], update_and_extend]))


def test_constraint_violated_midway_rolls_back_the_whole_write(backend, target, reopen):
    """A real error raised by the database after part of the frame was merged (a CHECK on volume)."""
    if backend == "duckdb":  # DuckDB cannot add constraints later: create the table with it first
        with duckdb.connect(target) as con:
            con.execute(duckdb_backend.SCHEMA.replace("volume DOUBLE,", "volume DOUBLE CHECK (volume >= 0),"))
        store = reopen()
    else:
        store = reopen()
        with psycopg.connect(target, autocommit=True) as con:
            con.execute("ALTER TABLE bars ADD CONSTRAINT volume_not_negative CHECK (volume >= 0)")
    before = make_bars(50)
    store.write_bars("bybit", "BTCUSDT", "1h", before)
    bad = make_bars(50, start=T0 + 25 * HOUR, seed=3)
    bad.loc[30, "volume"] = -1.0  # well after rows that update and rows that insert

    with pytest.raises(StoreError, match="nothing was changed") as raised:
        store.write_bars("bybit", "BTCUSDT", "1h", bad)
    assert "\n" not in str(raised.value)
    assert_same_bars(store.read_bars("bybit", "BTCUSDT", "1h"), before)


# ---- opening -----------------------------------------------------------------------------------------------
def test_non_duckdb_file_is_a_store_error(tmp_path):
    path = tmp_path / "not-a-store.duckdb"
    path.write_text("time,open,high,low,close,volume\n" * 200)
    with pytest.raises(StoreError, match="cannot open DuckDB store") as raised:
        open_store(path)
    assert "\n" not in str(raised.value)
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "no" / "such" / "folder.duckdb")


# ---- a real year's worth and more --------------------------------------------------------------------------
def test_large_binance_export_round_trips_exactly(store, btc_csv):
    export = pd.read_csv(btc_csv)
    expected = as_bars(export)
    assert store.write_bars("binance", "BTCUSDT", "1h", export) == len(expected) > 33_000
    store.write_bars("binance", "BTCUSDT", "1h", export)  # again: the idempotent path over every row
    back = store.read_bars("binance", "BTCUSDT", "1h")
    assert_same_bars(back, expected)
    assert store.coverage()["rows"].tolist() == [len(expected)]


# ---- PostgreSQL only ---------------------------------------------------------------------------------------
pg = pytest.mark.postgres


def assert_connect_error(url: str, where: str, cause: str, secret: str | None = None) -> None:
    with pytest.raises(StoreError) as raised:
        open_store(url)
    message = str(raised.value)
    assert message.startswith(f"cannot connect to PostgreSQL at {where}: "), message
    assert cause in message, message
    assert message.endswith("; check the URL and that the server is running"), message
    assert "\n" not in message
    if secret:
        assert secret not in message


@pg
def test_unreachable_postgres_is_a_one_line_store_error():
    port = _free_port()  # nothing listens there
    assert_connect_error(f"postgresql://trader:hunter2secret@127.0.0.1:{port}/market",
                         f"127.0.0.1:{port}/market", "Connection refused", secret="hunter2secret")
    assert_connect_error("postgresql://trader:hunter2secret@127.0.0.1:notaport/market",
                         "127.0.0.1:notaport/market", "", secret="hunter2secret")


@pg
def test_auth_failures_name_the_problem_without_the_password(postgres_server, postgres_url):
    port = postgres_server.port
    wrong = postgres_server.url("postgres", PASSWORD_USER, "wrong-password-xyz")
    assert_connect_error(wrong, f"127.0.0.1:{port}/postgres", "password authentication failed",
                         secret="wrong-password-xyz")
    no_role = postgres_server.url("postgres", "nobody", "hunter2secret")
    assert_connect_error(no_role, f"127.0.0.1:{port}/postgres", 'role "nobody" does not exist',
                         secret="hunter2secret")
    assert_connect_error(postgres_server.url("no_such_db"), f"127.0.0.1:{port}/no_such_db",
                         'database "no_such_db" does not exist')


@pg
def test_password_is_masked_in_the_store_url(postgres_server):
    name = postgres_server.create_database(owner=PASSWORD_USER)
    try:
        with open_store(postgres_server.url(name, PASSWORD_USER, PASSWORD)) as store:
            assert isinstance(store, PostgresStore)
            assert PASSWORD not in store.url and PASSWORD not in repr(store)
            assert store.url == f"postgresql://{PASSWORD_USER}:***@127.0.0.1:{postgres_server.port}/{name}"
    finally:
        postgres_server.drop_database(name)


@pg
def test_plain_postgres_uses_a_btree_key_and_reports_its_kind(pg_store, fresh_postgres_url):
    assert pg_store.backend_kind == "postgresql"
    with psycopg.connect(fresh_postgres_url) as con:
        index = con.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'bars'").fetchall()
        tables = {r[0] for r in con.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = 'bars'").fetchall())
    assert index == [('CREATE UNIQUE INDEX bars_pkey ON public.bars USING btree '
                      '(exchange, symbol, timeframe, "time")',)]
    assert tables == {"bars", "timeframes", "known_gaps", "sync_state", "store_meta", "funding_rates", "funding_sync",
                      *TRADING_TABLES}
    assert types["time"] == "timestamp with time zone" and types["close"] == "double precision"
    pg_store.close()
    with pytest.raises(StoreError, match="closed"):
        pg_store.read_bars("bybit", "BTCUSDT", "1h")


@pg
def test_retention_without_timescaledb_keeps_everything(fresh_postgres_url, caplog):
    with PostgresStore(fresh_postgres_url, retention="5 years") as store:
        assert store.backend_kind == "postgresql"
    assert "needs TimescaleDB" in caplog.text
    with pytest.raises(ConfigError, match="not an interval"):
        PostgresStore(fresh_postgres_url, retention="forever")


@pg
def test_concurrent_first_opens_of_one_database_all_succeed(fresh_postgres_url):
    stores, errors = [], []

    def open_one():
        try:
            stores.append(PostgresStore(fresh_postgres_url))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert errors == [] and len(stores) == 6


@pg
def test_reconnects_once_after_the_connection_is_cut(pg_store, postgres_server):
    bars = make_bars(10)
    pg_store.write_bars("bybit", "BTCUSDT", "1h", bars)
    with postgres_server.admin() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pg_store._conn.info.backend_pid])
    assert_same_bars(pg_store.read_bars("bybit", "BTCUSDT", "1h"), bars)
    with postgres_server.admin() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pg_store._conn.info.backend_pid])
    pg_store.write_bars("bybit", "BTCUSDT", "1h", make_bars(12))
    assert len(pg_store.read_bars("bybit", "BTCUSDT", "1h")) == 12


# ---- TimescaleDB: the statements it would run (the test server lacks the extension) ------------------------
def test_timescale_statements_make_a_compressed_hypertable():
    assert timescale_statements(convert=True, retention="5 years") == [
        "SELECT create_hypertable('bars', 'time', chunk_time_interval => INTERVAL '30 days', "
        "if_not_exists => TRUE, migrate_data => TRUE)",
        "ALTER TABLE bars SET (timescaledb.compress, "
        "timescaledb.compress_segmentby = 'exchange, symbol, timeframe', "
        "timescaledb.compress_orderby = 'time')",
        "SELECT add_compression_policy('bars', compress_after => INTERVAL '30 days', if_not_exists => TRUE)",
        "SELECT add_retention_policy('bars', drop_after => INTERVAL '5 years', if_not_exists => TRUE)",
    ]
    # an existing hypertable only gets its policies (re)applied; no retention unless asked
    assert timescale_statements(convert=False, compress_after="7 days") == [
        "SELECT add_compression_policy('bars', compress_after => INTERVAL '7 days', if_not_exists => TRUE)"]
    for bad in ("forever", "5 years'; DROP TABLE bars; --", "5"):
        with pytest.raises(ConfigError):
            timescale_statements(convert=True, retention=bad)


class RecordingCursor:
    """Stands in for a psycopg cursor: records SQL, answers the EXISTS queries from a script."""

    def __init__(self, available: bool, hypertable: bool = False, fail_on: str | None = None):
        self.sql: list[str] = []
        self._answers = {"pg_available_extensions": available, "timescaledb_information": hypertable}
        self._fail_on = fail_on
        self._last = None
        self.connection = self
        self.savepoints = 0

    def transaction(self):
        self.savepoints += 1
        return contextlib.nullcontext()

    def execute(self, sql, params=None):
        if self._fail_on and self._fail_on in sql:
            raise psycopg.errors.FeatureNotSupported('extension "timescaledb" must be preloaded')
        self.sql.append(sql)
        self._last = sql

    def fetchone(self):
        return next((answer,) for key, answer in self._answers.items() if key in self._last)


def test_without_the_extension_tables_stay_plain():
    cur = RecordingCursor(available=False)
    assert enable_timescale(cur, retention="5 years") is False
    assert not any("timescaledb" in s and "pg_available" not in s for s in cur.sql)


def test_with_the_extension_bars_becomes_a_hypertable():
    cur = RecordingCursor(available=True, hypertable=False)
    assert enable_timescale(cur, retention="5 years") is True
    assert cur.sql[1] == "CREATE EXTENSION IF NOT EXISTS timescaledb"
    assert cur.sql[3:] == timescale_statements(convert=True, retention="5 years")
    assert cur.savepoints == 1

    existing = RecordingCursor(available=True, hypertable=True)
    assert enable_timescale(existing) is True
    assert existing.sql[3:] == timescale_statements(convert=False)


def test_extension_that_cannot_be_enabled_falls_back_to_plain_tables(caplog):
    cur = RecordingCursor(available=True, fail_on="CREATE EXTENSION")
    assert enable_timescale(cur) is False
    assert "using plain PostgreSQL tables" in caplog.text


# ---- the trading service's tables ----------------------------------------------------------------------------
def _prediction(n: int = 0) -> dict:
    return {"id": f"sma:BTCUSDT:1h:{n}", "market": "BTCUSDT:1h", "strategy": "sma", "symbol": "BTCUSDT",
            "timeframe": "1h", "decided_at": 3_600_000 * (n + 1), "bar_time": 3_600_000 * n, "target": 1.0,
            "confidence": float("nan"), "recorded_at": 1}


def _order(cid: str, n: int = 0) -> dict:
    return {"client_id": cid, "market": "BTCUSDT:1h", "symbol": "BTCUSDT", "side": "buy", "quantity": 0.25,
            "reduce_only": False, "reason": "signal", "created_at": 3_600_000 * (n + 1)}


def test_prediction_and_pending_orders_are_stored_together_and_idempotently(store, reopen):
    store.record_prediction(_prediction(), [_order("ms-a-0"), _order("ms-a-1")])
    store.update_order("ms-a-0", status="filled", exchange_id="42", filled_quantity=0.25, average_price=100.0,
                       fee=0.01, updated_at=5,
                       fill={"market": "BTCUSDT:1h", "symbol": "BTCUSDT", "side": "buy", "quantity": 0.25,
                             "price": 100.0, "fee": 0.01, "time": 5},
                       position={"market": "BTCUSDT:1h", "symbol": "BTCUSDT", "quantity": 0.25, "entry_price": 100.0,
                                 "equity": 999.99, "realised_pnl": 0.0, "fees": 0.01, "updated_at": 5},
                       state={"halted": {"reason": None}})
    store.record_prediction(_prediction(), [_order("ms-a-0"), _order("ms-a-1")])  # a restarted step: no change
    again = reopen()
    orders = again.orders()
    assert orders["client_id"].tolist() == ["ms-a-0", "ms-a-1"]
    assert orders["status"].tolist() == ["filled", "pending"]
    assert orders["prediction_id"].tolist() == ["sma:BTCUSDT:1h:0"] * 2
    assert again.orders(status=("pending", "submitted"))["client_id"].tolist() == ["ms-a-1"]
    assert again.order("ms-a-0")["exchange_id"] == "42" and again.order("nope") is None
    predictions = again.predictions()
    assert len(predictions) == 1 and predictions["confidence"].isna().all()
    assert again.fills()["price"].tolist() == [100.0]
    assert again.positions()[["market", "quantity", "equity"]].values.tolist() == [["BTCUSDT:1h", 0.25, 999.99]]
    assert again.service_state() == {"halted": {"reason": None}}


def test_a_failed_prediction_write_stores_nothing(store):
    bad = _order("ms-b-0")
    bad["quantity"] = None  # NOT NULL: the whole transaction fails
    with pytest.raises(StoreError):
        store.record_prediction(_prediction(1), [_order("ms-b-1", 1), bad])
    assert store.predictions().empty and store.orders().empty


def test_service_state_round_trips_json(store):
    store.set_state({"last_bar": {"BTCUSDT:1h": 123}, "halted": True})
    store.set_state({"halted": False})
    assert store.service_state() == {"last_bar": {"BTCUSDT:1h": 123}, "halted": False}
    store.set_positions([{"market": "X:1h", "symbol": "X", "quantity": -1.5, "entry_price": 2.0, "equity": 3.0,
                          "realised_pnl": 0.5, "fees": 0.1, "updated_at": 7}], state={"n": 1})
    assert store.positions()["quantity"].tolist() == [-1.5] and store.service_state()["n"] == 1
