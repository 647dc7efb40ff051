"""The data commands through the real CLI entry point: results, and one-line errors with exit code 2.

The CLI asks with the machine's real clock, so the fake exchange serves a month of real candles moved to end
the day before today, and its market clock is the real time: the two clocks agree, as with a real exchange.
"""

import hashlib
import subprocess
import sys

import duckdb
import pandas as pd
import pytest

from marketsynth.data.io import read_bars_file
from marketsynth.data.store import open_store
from marketsynth.testing.fake_exchange import FakeExchange
from tests.cli_helpers import assert_one_line_error as one_line_error
from tests.cli_helpers import run


@pytest.fixture(scope="module")
def month(btc_csv):
    """30 days of real hourly candles, shifted by whole days so the last one opened yesterday."""
    bars = read_bars_file(btc_csv).iloc[2000 : 2000 + 24 * 30].reset_index(drop=True)
    shift = pd.Timestamp.now(tz="UTC").floor("1D") - pd.Timedelta(days=1) - bars.time.iloc[-1].floor("1D")
    return bars.assign(time=bars.time + shift)


@pytest.fixture
def fake(month):
    with FakeExchange(
        {
            "BTCUSDT": month,
            "ETHUSDT": month.assign(
                close=month.close / 10, open=month.open / 10, high=month.high / 10, low=month.low / 10
            ),
        }
    ) as ex:
        ex.now = pd.Timestamp.now(tz="UTC")  # the market clock is our clock
        yield ex


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def fetch_args(fake, store, *extra):
    """The whole month: up to the last closed candle (the fake's last candle is today's open one)."""
    first, last = fake.candles("BTCUSDT", "1h").time.iloc[[0, -2]]
    return [
        "fetch",
        "--exchange",
        "bybit",
        "--symbol",
        "BTCUSDT",
        "--interval",
        "1h",
        "--store",
        store,
        "--base-url",
        fake.base_url,
        "--start",
        first.isoformat(),
        "--end",
        (last + pd.Timedelta(hours=1)).isoformat(),
        *extra,
    ]


def row_of(out: str, *words: str) -> list[str]:
    """The cells of the one table row that holds every word."""
    rows = [line for line in out.splitlines() if all(word in line for word in words)]
    assert len(rows) == 1, out
    return [cell.strip() for cell in rows[0].strip("│┃ ").split("│")]


def test_fetch_then_export_round_trip(capsys, tmp_path, fake, month):
    store = tmp_path / "s.duckdb"
    code, out, err = run(capsys, *fetch_args(fake, store, "--output", tmp_path / "out.csv"))
    assert code == 0 and "warning" not in err
    assert row_of(out, "BTCUSDT", "1h")[4] == "720"
    pd.testing.assert_frame_equal(read_bars_file(tmp_path / "out.csv"), month)
    code, out, _ = run(capsys, *fetch_args(fake, store))
    assert code == 0 and "already up to date" in out


# ---- issue 13: a clock that cannot be believed, and a store poisoned by one ------------------------------------
def test_bybit_time_zero_stores_every_candle_and_warns_once(capsys, tmp_path, fake, month):
    """Bybit's envelope ``"time": 0`` used to make every candle look still open: fetched 0, all "exchange lacks"."""
    fake.envelope_time = 0
    store = tmp_path / "s.duckdb"
    code, out, err = run(capsys, *fetch_args(fake, store))
    assert code == 0
    assert row_of(out, "BTCUSDT", "1h")[4:] == ["720", "0", "updated"]
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "bybit's answers carry time 0 while our clock says" in warnings[0]
    assert "/v5/market/time says" in warnings[0]
    with open_store(store, read_only=True) as db:
        pd.testing.assert_frame_equal(db.read_bars("bybit", "BTCUSDT", "1h"), month)
        assert db.known_gaps().empty


# What an older marketsynth left behind when a Bybit answer said "time": 0 (issue 13): a version 1 store whose
# known gaps swallowed the whole month, and not one candle.
V1_SCHEMA = """
CREATE TABLE store_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE timeframes (name VARCHAR PRIMARY KEY, seconds BIGINT, pandas_freq VARCHAR NOT NULL);
CREATE TABLE bars (
    exchange VARCHAR NOT NULL, symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL, time TIMESTAMP NOT NULL,
    open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE,
    PRIMARY KEY (exchange, symbol, timeframe, time));
CREATE TABLE known_gaps (
    exchange VARCHAR NOT NULL, symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL,
    start_time TIMESTAMP NOT NULL, end_time TIMESTAMP NOT NULL, recorded_at TIMESTAMP NOT NULL,
    PRIMARY KEY (exchange, symbol, timeframe, start_time));
CREATE TABLE sync_state (
    exchange VARCHAR NOT NULL, symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL,
    synced_start TIMESTAMP NOT NULL, synced_end TIMESTAMP NOT NULL, synced_at TIMESTAMP NOT NULL,
    PRIMARY KEY (exchange, symbol, timeframe));
INSERT INTO store_meta VALUES ('schema_version', '1');
"""


def poisoned_v1_store(path, month) -> pd.Timestamp:
    """A version 1 store as issue 13 left it; returns when the gap was recorded (three days ago)."""
    first, end = (t.tz_localize(None) for t in (month.time.iloc[0], month.time.iloc[-1] + pd.Timedelta(hours=1)))
    recorded = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(days=3)
    with duckdb.connect(str(path)) as con:
        con.execute(V1_SCHEMA)
        con.execute("INSERT INTO known_gaps VALUES ('bybit', 'BTCUSDT', '1h', ?, ?, ?)",
                    [first, end, recorded.tz_localize(None)])
        con.execute("INSERT INTO sync_state VALUES ('bybit', 'BTCUSDT', '1h', ?, ?, ?)",
                    [first, end, recorded.tz_localize(None)])
    return recorded


def test_poisoned_store_shows_its_known_gaps_and_recheck_gaps_recovers_it(capsys, tmp_path, fake, month):
    store = tmp_path / "old.duckdb"
    poisoned_v1_store(store, month)

    code, out, _ = run(capsys, "data", "check", "--store", store)  # read-only: the old store as it is
    assert code == 0
    cells = row_of(out, "bybit", "BTCUSDT")
    assert cells[5] == "0" and cells[8] == "720" and cells[9] == "1 (3.0 d)"

    code, out, _ = run(capsys, *fetch_args(fake, store))  # the known gaps still stand: nothing is asked
    assert code == 0 and row_of(out, "BTCUSDT", "1h")[4:] == ["0", "0", "already up to date"]
    assert fake.kline_requests() == []

    code, out, _ = run(capsys, *fetch_args(fake, store, "--recheck-gaps"))
    assert code == 0 and row_of(out, "BTCUSDT", "1h")[4:] == ["720", "0", "updated (re-checked 720)"]
    with open_store(store, read_only=True) as db:
        pd.testing.assert_frame_equal(db.read_bars("bybit", "BTCUSDT", "1h"), month)
        assert db.known_gaps().empty
    code, out, _ = run(capsys, "data", "check", "--store", store)
    cells = row_of(out, "bybit", "BTCUSDT")
    assert cells[5] == "720" and cells[8:10] == ["0", "0"]


def test_known_gaps_show_their_count_and_age(capsys, tmp_path, fake, month):
    hole = month.time.iloc[100]
    fake.missing.add("BTCUSDT", hole, hole + pd.Timedelta(hours=3))
    store = tmp_path / "s.duckdb"
    code, out, _ = run(capsys, *fetch_args(fake, store))
    assert code == 0 and row_of(out, "BTCUSDT", "1h")[4:] == ["717", "3", "updated"]
    code, out, _ = run(capsys, "data", "check", "--store", store)
    cells = row_of(out, "bybit", "BTCUSDT")
    assert cells[5:10] == ["717", "0 (0)", "3 (3 h)", "3", "1 (0 min)"]


# ---- funding rates ---------------------------------------------------------------------------------------------
def test_fetch_with_funding_stores_the_series_and_counts_it(capsys, tmp_path, fake, month):
    store = tmp_path / "s.duckdb"
    code, out, _ = run(capsys, *fetch_args(fake, store, "--funding"))
    assert code == 0
    served = fake.funding("BTCUSDT")
    assert len(served) == 90  # 8-hourly from the first candle (01:00) to the end of the last (01:00 a month on)
    assert row_of(out, "BTCUSDT", "funding")[4:] == [str(len(served)), "-", "updated"]
    assert row_of(out, "BTCUSDT", "1h")[4] == "720"
    with open_store(store, read_only=True) as db:
        pd.testing.assert_frame_equal(db.read_funding("bybit", "BTCUSDT"), served)
    code, out, _ = run(capsys, *fetch_args(fake, store, "--funding"))
    assert row_of(out, "BTCUSDT", "funding")[4:] == ["0", "-", "already up to date"]
    args = fetch_args(fake, store, "--funding", "--category", "spot")
    one_line_error(*run(capsys, *args)[::2], "--funding needs perpetuals", "use --category linear or inverse")


def test_fetch_from_config_runs_every_symbol_and_timeframe(capsys, tmp_path, fake, month):
    config = tmp_path / "m.yaml"
    assert run(capsys, "init", "--output", config)[0] == 0
    text = config.read_text().replace("exchange: bybit ", "exchange: binance")
    text = text.replace("store: marketsynth.duckdb", f"store: {tmp_path / 'c.duckdb'}")
    text = text.replace("base_url: null", f"base_url: {fake.base_url}").replace("[15m, 1h]", "[1h, 4h]")
    config.write_text(text)
    first = month.time.iloc[0]
    code, out, _ = run(
        capsys,
        "fetch",
        "--config",
        config,
        "--start",
        first.isoformat(),
        "--end",
        (first + pd.Timedelta(days=30)).isoformat(),
    )
    assert code == 0, out
    with open_store(tmp_path / "c.duckdb") as db:
        coverage = db.coverage()
    assert sorted(zip(coverage.symbol, coverage.timeframe, strict=True)) == [
        ("BTCUSDT", "1h"),
        ("BTCUSDT", "4h"),
        ("ETHUSDT", "1h"),
        ("ETHUSDT", "4h"),
    ]
    assert set(coverage.exchange) == {"binance"}


def test_import_check_resample_export(capsys, tmp_path, btc_csv):
    store = tmp_path / "s.duckdb"
    code, out, _ = run(
        capsys,
        "data",
        "import",
        btc_csv,
        "--symbol",
        "BTCUSDT",
        "--interval",
        "1h",
        "--exchange",
        "binance",
        "--store",
        store,
    )
    assert code == 0 and "imported 33364 1h bars" in out
    assert (
        run(
            capsys,
            "data",
            "import",
            btc_csv,
            "--symbol",
            "BTCUSDT",
            "--interval",
            "60",
            "--exchange",
            "binance",
            "--store",
            store,
        )[0]
        == 0
    )  # idempotent
    code, out, _ = run(
        capsys, "data", "resample", "--symbol", "BTCUSDT", "--from", "1h", "--to", "4h,1d", "--store", store
    )
    assert code == 0 and "8340 4h bars" in out and "1389 1d bars" in out
    code, out, _ = run(capsys, "data", "check", "--store", store)
    assert code == 0
    rows = [line for line in out.splitlines() if "BTCUSDT" in line]
    assert len(rows) == 3 and any("33364" in row for row in rows)
    code, out, _ = run(
        capsys,
        "data",
        "export",
        "--symbol",
        "BTCUSDT",
        "--interval",
        "1d",
        "--output",
        tmp_path / "d.parquet",
        "--start",
        "2021-01-01",
        "--end",
        "2021-01-08",
        "--store",
        store,
    )
    assert code == 0 and "exported 7 bars" in out
    assert len(read_bars_file(tmp_path / "d.parquet")) == 7


def test_check_a_file_reports_duplicates_gaps_and_violations(capsys, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        "timestamp,open,high,low,close,volume\n2021-01-01T00:00:00Z,1,2,0.5,1.5,10\n"
        "2021-01-01T01:00:00Z,1.5,1.4,1,1.2,5\n2021-01-01T01:00:00Z,1.5,1.4,1,1.2,5\n"
        "2021-01-01T04:00:00Z,1.5,1.6,1,1.2,-5\n"
    )
    code, out, _ = run(capsys, "data", "check", "--file", path, "--interval", "1h")
    assert code == 0
    row = next(line for line in out.splitlines() if "file" in line and "1h" in line)
    assert "1 (2)" in row and "1 high<body" in row and "1 volume<0" in row


@pytest.mark.parametrize(
    ("args", "phrases"),
    [
        (
            ["fetch", "--exchange", "kraken", "--symbol", "BTCUSDT", "--interval", "1h", "--days", "1"],
            ["unknown exchange 'kraken'"],
        ),
        (
            ["fetch", "--exchange", "bybit", "--symbol", "BTCUSDT", "--interval", "7x", "--days", "1"],
            ["unknown interval '7x'"],
        ),
        (
            [
                "fetch",
                "--exchange",
                "bybit",
                "--symbol",
                "BTCUSDT",
                "--interval",
                "1h",
                "--start",
                "2021-02-01",
                "--end",
                "2021-01-01",
            ],
            ["not before --end", "swap"],
        ),
        (
            ["fetch", "--exchange", "bybit", "--symbol", "BTCUSDT", "--interval", "1h", "--start", "yesterday-ish"],
            ["is not a date"],
        ),
        (["data", "export", "--symbol", "NOPE", "--interval", "1h", "--output", "x.csv"], ["has no NOPE 1h"]),
        (["data", "resample", "--symbol", "BTCUSDT", "--from", "1h", "--to", "15m"], ["whole multiple"]),
    ],
)
def test_bad_input_is_one_line_and_leaves_the_store_alone(capsys, tmp_path, monkeypatch, btc_csv, args, phrases):
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "marketsynth.duckdb"
    with open_store(store) as db:
        db.write_bars("binance", "BTCUSDT", "1h", read_bars_file(btc_csv).iloc[:48])
    before = digest(store)
    code, _, err = run(capsys, *args)
    one_line_error(code, err, *phrases)
    assert digest(store) == before


def test_unknown_symbol_gets_a_suggestion(capsys, tmp_path, fake):
    args = fetch_args(fake, tmp_path / "s.duckdb")
    args[args.index("BTCUSDT")] = "BTCUSD"
    code, _, err = run(capsys, *args)
    one_line_error(code, err, "does not list symbol 'BTCUSD'", "did you mean BTCUSDT?")


def test_unreachable_exchange_says_so(capsys, tmp_path, fake):
    args = fetch_args(fake, tmp_path / "s.duckdb", "--retries", "2")
    url = fake.base_url
    fake.stop()
    code, _, err = run(capsys, *args)
    one_line_error(code, err, "cannot reach", url.split("//")[1])


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        ("time,open,high\n1,2,3\n", "no 'low' column"),
        ("\x00\x01garbage", "bad.csv"),
        ("timestamp,open,high,low,close,volume\n2021-01-01T00:30:00Z,1,2,0.5,1.5,1\n", "not 1h bar open times"),
    ],
)
def test_malformed_import_is_refused_and_store_unchanged(capsys, tmp_path, btc_csv, content, phrase):
    store = tmp_path / "s.duckdb"
    with open_store(store) as db:
        db.write_bars("import", "BTCUSDT", "1h", read_bars_file(btc_csv).iloc[:48])
    before = digest(store)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content.encode())
    code, _, err = run(capsys, "data", "import", bad, "--symbol", "BTCUSDT", "--interval", "1h", "--store", store)
    one_line_error(code, err, phrase)
    assert digest(store) == before


def test_unreachable_database_is_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "data", "check", "--store", "postgresql://me:secret@127.0.0.1:1/nodb")
    one_line_error(code, err, "cannot connect to PostgreSQL")
    assert "secret" not in err


def test_console_script_exit_code_and_debug(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "marketsynth.cli.app",
        "data",
        "import",
        str(tmp_path / "none.csv"),
        "--symbol",
        "X",
        "--interval",
        "1h",
        "--store",
        str(tmp_path / "s.duckdb"),
    ]
    plain = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert plain.returncode == 2 and plain.stderr.strip().startswith("error:") and "Traceback" not in plain.stderr
    debug = subprocess.run(cmd[:3] + ["--debug"] + cmd[3:], capture_output=True, text=True, timeout=60)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
