"""Incremental sync against the fake exchange: exact data after faults, resume, known gaps, no open candle."""

import pandas as pd
import pytest

from marketsynth.data.exchanges import get_source
from marketsynth.data.io import read_bars_file
from marketsynth.data.store import open_store
from marketsynth.data.sync import sync_series
from marketsynth.errors import ExchangeError
from marketsynth.testing.fake_exchange import FakeExchange

HOURS = 3000  # ~4 months of the real file keeps each test quick
T = pd.Timestamp


@pytest.fixture(scope="module")
def source_bars(btc_csv):
    return read_bars_file(btc_csv).iloc[1000:1000 + HOURS].reset_index(drop=True)


@pytest.fixture
def fake(source_bars):
    with FakeExchange({"BTCUSDT": source_bars}) as exchange:
        yield exchange


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "test.duckdb") as db:
        yield db


def make_source(name, fake, sleeps=None, **kwargs):
    options = {"backoff": 0.01, "max_backoff": 0.05, "timeout": 3.0, "max_attempts": 6}
    options.update(kwargs)
    return get_source(name, base_url=fake.base_url, sleep=(sleeps.append if sleeps is not None else lambda s: None),
                      **options)


def span(bars):
    return bars.time.iloc[0], bars.time.iloc[-1] + pd.Timedelta(hours=1)


@pytest.mark.parametrize("exchange", ["bybit", "binance"])
def test_stored_data_equals_source_after_every_fault(exchange, fake, store, source_bars):
    for kind in ("429", "500", "502", "503", "timeout", "malformed", "empty", "403"):
        fake.faults.add(kind, times=1, delay=3.5)
    if exchange == "bybit":
        fake.faults.add("bybit_10006", times=2, reset=0.01)
    else:
        fake.faults.add("418", times=1, retry_after=1)
    sleeps: list[float] = []
    with make_source(exchange, fake, sleeps, max_attempts=20) as source:
        result = sync_series(store, source, "BTCUSDT", "1h", *span(source_bars), now=fake.now)
    stored = store.read_bars(exchange, "BTCUSDT", "1h")
    pd.testing.assert_frame_equal(stored, source_bars)
    assert result.stored_bars == HOURS and result.missing_bars == 0
    assert len(fake.faults) == 0, "every injected fault was served"
    assert max(sleeps) >= 1.0, "Retry-After was honoured"


def test_rerun_fetches_nothing_and_extension_fetches_only_new_bars(fake, store, source_bars):
    start, end = span(source_bars)
    middle = start + pd.Timedelta(hours=1500)
    with make_source("binance", fake) as source:
        sync_series(store, source, "BTCUSDT", "1h", middle, end, now=fake.now)
        fake.clear_requests()
        again = sync_series(store, source, "BTCUSDT", "1h", middle, end, now=fake.now)
        assert again.planned_bars == 0 and fake.kline_requests() == []
        earlier = sync_series(store, source, "BTCUSDT", "1h", start, end, now=fake.now)
    assert earlier.stored_bars == 1500
    requested_ends = [int(r.params["endTime"]) for r in fake.kline_requests()]
    assert max(requested_ends) < middle.value // 1_000_000, "only the missing earlier part was asked for"
    pd.testing.assert_frame_equal(store.read_bars("binance", "BTCUSDT", "1h"), source_bars)


def test_hole_inside_the_store_is_filled(fake, store, source_bars):
    store.write_bars("bybit", "BTCUSDT", "1h", source_bars.drop(index=range(100, 130)))
    with make_source("bybit", fake) as source:
        result = sync_series(store, source, "BTCUSDT", "1h", *span(source_bars), now=fake.now)
    assert result.planned_bars == 30 and result.stored_bars == 30
    pd.testing.assert_frame_equal(store.read_bars("bybit", "BTCUSDT", "1h"), source_bars)


def test_missing_candles_become_known_gaps_and_are_not_asked_again(fake, store, source_bars):
    hole_start = source_bars.time.iloc[200]
    fake.missing.add("BTCUSDT", hole_start, hole_start + pd.Timedelta(hours=5))
    with make_source("binance", fake) as source:
        result = sync_series(store, source, "BTCUSDT", "1h", *span(source_bars), now=fake.now)
        assert result.missing_bars == 5
        assert store.known_missing("binance", "BTCUSDT", "1h") == [(hole_start, hole_start + pd.Timedelta(hours=5))]
        assert store.gaps("binance", "BTCUSDT", "1h") == []
        assert len(store.gaps("binance", "BTCUSDT", "1h", include_known=True)) == 1
        fake.clear_requests()
        sync_series(store, source, "BTCUSDT", "1h", *span(source_bars), now=fake.now)
        assert fake.kline_requests() == []
    stored = store.read_bars("binance", "BTCUSDT", "1h")
    assert len(stored) == HOURS - 5 and not stored.time.duplicated().any()
    pd.testing.assert_frame_equal(stored, source_bars.drop(index=range(200, 205)).reset_index(drop=True))


def test_interrupted_fetch_resumes_where_it_stopped(fake, store, source_bars):
    with make_source("binance", fake) as source:
        real_fetch = source.fetch_bars

        def fetch_then_ctrl_c(*args, **kwargs):
            pages = real_fetch(*args, **kwargs)
            yield next(pages)
            raise KeyboardInterrupt

        source.fetch_bars = fetch_then_ctrl_c
        with pytest.raises(KeyboardInterrupt):
            sync_series(store, source, "BTCUSDT", "1h", *span(source_bars), now=fake.now)
        assert len(store.read_bars("binance", "BTCUSDT", "1h")) == source.max_limit, "the first page was kept"
        source.fetch_bars = real_fetch
        result = sync_series(store, source, "BTCUSDT", "1h", *span(source_bars), now=fake.now)
    assert result.planned_bars == HOURS - source.max_limit
    pd.testing.assert_frame_equal(store.read_bars("binance", "BTCUSDT", "1h"), source_bars)


def test_retry_budget_is_bounded_and_earlier_data_survives(fake, store, source_bars):
    first = source_bars.iloc[:100]
    store.write_bars("bybit", "BTCUSDT", "1h", first)
    fake.faults.add("503", times=None)
    with make_source("bybit", fake, max_attempts=3) as source, pytest.raises(ExchangeError, match="3 attempts"):
        sync_series(store, source, "BTCUSDT", "1h", *span(source_bars), now=fake.now)
    assert len(fake.kline_requests()) == 3
    pd.testing.assert_frame_equal(store.read_bars("bybit", "BTCUSDT", "1h"), first)


@pytest.mark.parametrize("exchange", ["bybit", "binance"])
def test_open_candle_is_never_stored(exchange, fake, store, source_bars):
    fake.now = source_bars.time.iloc[-10] + pd.Timedelta(minutes=30)  # inside bar -10, which is still open
    with make_source(exchange, fake) as source:
        sync_series(store, source, "BTCUSDT", "1h", source_bars.time.iloc[0], T("2030-01-01", tz="UTC"), now=fake.now)
    stored = store.read_bars(exchange, "BTCUSDT", "1h")
    assert stored.time.iloc[-1] == source_bars.time.iloc[-11]
    assert store.known_missing(exchange, "BTCUSDT", "1h") == []


def test_period_before_listing_is_recorded_once(fake, store, source_bars):
    early = source_bars.time.iloc[0] - pd.Timedelta(days=30)
    with make_source("bybit", fake) as source:
        result = sync_series(store, source, "BTCUSDT", "1h", early, span(source_bars)[1], now=fake.now)
    assert result.missing_bars == 30 * 24
    assert store.known_missing("bybit", "BTCUSDT", "1h") == [(early, source_bars.time.iloc[0])]
