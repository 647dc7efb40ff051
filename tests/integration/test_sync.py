"""Incremental sync against the fake exchange: exact data after faults, resume, known gaps, no open candle,
clocks that cannot be believed (issue 13), re-checking known gaps, funding rates."""

import httpx
import pandas as pd
import pytest

from marketsynth.data.exchanges import get_source
from marketsynth.data.exchanges.clock import ExchangeClockWarning
from marketsynth.data.funding import read_funding
from marketsynth.data.io import read_bars_file
from marketsynth.data.store import open_store
from marketsynth.data.sync import sync_funding, sync_series
from marketsynth.errors import ConfigError, DataError, ExchangeError
from marketsynth.testing.fake_exchange import FakeExchange

HOURS = 3000  # ~4 months of the real file keeps each test quick
T = pd.Timestamp
DAY = pd.Timedelta(days=1)

# A clock warning nobody expected is a failure: tests that expect one say so with pytest.warns.
pytestmark = pytest.mark.filterwarnings("error::marketsynth.data.exchanges.clock.ExchangeClockWarning")


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
    options = {"backoff": 0.01, "max_backoff": 0.05, "timeout": 10.0, "max_attempts": 6}
    options.update(kwargs)
    return get_source(name, base_url=fake.base_url, sleep=(sleeps.append if sleeps is not None else lambda s: None),
                      **options)


class TimesOut(httpx.HTTPTransport):
    """The real transport, except that the first ``times`` requests to ``path_part`` time out at once."""

    def __init__(self, times: int = 1, path_part: str = "kline"):
        super().__init__()
        self.left, self.path_part = times, path_part

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.left and self.path_part in request.url.path:
            self.left -= 1
            raise httpx.ReadTimeout("timed out (injected)", request=request)
        return super().handle_request(request)


def span(bars):
    return bars.time.iloc[0], bars.time.iloc[-1] + pd.Timedelta(hours=1)


@pytest.mark.parametrize("exchange", ["bybit", "binance"])
def test_stored_data_equals_source_after_every_fault(exchange, fake, store, source_bars):
    for kind in ("429", "500", "502", "503", "disconnect", "malformed", "empty", "403"):
        fake.faults.add(kind, times=1)
    if exchange == "bybit":
        fake.faults.add("bybit_10006", times=2, reset=0.01)
    else:
        fake.faults.add("418", times=1, retry_after=1)
    sleeps: list[float] = []
    timeouts = TimesOut(times=2)
    with make_source(exchange, fake, sleeps, max_attempts=20, transport=timeouts) as source:
        result = sync_series(store, source, "BTCUSDT", "1h", *span(source_bars), now=fake.now)
    stored = store.read_bars(exchange, "BTCUSDT", "1h")
    pd.testing.assert_frame_equal(stored, source_bars)
    assert result.stored_bars == HOURS and result.missing_bars == 0
    assert len(fake.faults) == 0, "every injected fault was served"
    assert timeouts.left == 0, "both injected timeouts happened"
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
        real_fetch = source.fetch_pages

        def fetch_then_ctrl_c(*args, **kwargs):
            pages = real_fetch(*args, **kwargs)
            yield next(pages)
            raise KeyboardInterrupt

        source.fetch_pages = fetch_then_ctrl_c
        with pytest.raises(KeyboardInterrupt):
            sync_series(store, source, "BTCUSDT", "1h", *span(source_bars), now=fake.now)
        assert len(store.read_bars("binance", "BTCUSDT", "1h")) == source.max_limit, "the first page was kept"
        assert store.known_missing("binance", "BTCUSDT", "1h") == []
        source.fetch_pages = real_fetch
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


def test_known_gaps_carry_when_and_why(fake, store, source_bars):
    hole_start = source_bars.time.iloc[200]
    fake.missing.add("BTCUSDT", hole_start, hole_start + pd.Timedelta(hours=5))
    before = pd.Timestamp.now(tz="UTC")
    with make_source("bybit", fake) as source:
        sync_series(store, source, "BTCUSDT", "1h", *span(source_bars), now=fake.now)
    gaps = store.known_gaps("bybit", "BTCUSDT", "1h")
    assert len(gaps) == 1 and gaps.start[0] == hole_start
    assert before <= gaps.recorded_at[0] <= pd.Timestamp.now(tz="UTC")
    assert gaps.reason[0] == f"bybit answered without these candles (bybit's clock: {fake.now:%Y-%m-%d %H:%M} UTC)"


# ---- issue 13: an exchange clock that cannot be believed never turns returned candles into gaps -----------------
def test_bybit_time_zero_envelope_keeps_every_candle(fake, store, source_bars):
    """Bybit's ``"time": 0`` made every candle look still open: dropped, then recorded as known gaps."""
    fake.envelope_time = 0
    with make_source("bybit", fake) as source, pytest.warns(ExchangeClockWarning) as caught:
        result = sync_series(store, source, "BTCUSDT", "1h", *span(source_bars), now=fake.now)
    pd.testing.assert_frame_equal(store.read_bars("bybit", "BTCUSDT", "1h"), source_bars)
    assert (result.stored_bars, result.missing_bars, result.status) == (HOURS, 0, "updated")
    assert store.known_missing("bybit", "BTCUSDT", "1h") == []
    assert len(caught) == 1, "warned once, not once per page"
    message = str(caught[0].message)
    assert "time 0" in message and f"our clock says {fake.now:%Y-%m-%d %H:%M:%S} UTC" in message
    assert "/v5/market/time says" in message  # the time endpoint agreed with us, so it decided
    assert sum(r.path == "/v5/market/time" for r in fake.requests) == 1


@pytest.mark.parametrize("exchange", ["bybit", "binance"])
def test_server_clock_far_behind_ours_keeps_every_candle(exchange, fake, store, source_bars):
    """A server clock a day behind made the last day's candles look still open and recorded them as gaps."""
    fake.clock_skew = -DAY
    with make_source(exchange, fake) as source, pytest.warns(ExchangeClockWarning) as caught:
        result = sync_series(store, source, "BTCUSDT", "1h", *span(source_bars), now=fake.now)
    pd.testing.assert_frame_equal(store.read_bars(exchange, "BTCUSDT", "1h"), source_bars)
    assert (result.stored_bars, result.missing_bars) == (HOURS, 0)
    assert store.known_missing(exchange, "BTCUSDT", "1h") == []
    message = str(caught[0].message)
    behind = fake.now - DAY
    assert f"time {behind:%Y-%m-%d %H:%M:%S} UTC (24 h behind ours)" in message
    assert f"our clock says {fake.now:%Y-%m-%d %H:%M:%S} UTC" in message and "by our clock" in message


def test_with_only_our_clock_an_empty_tail_is_not_a_known_gap(fake, store, source_bars):
    """Our clock decided (the exchange's is a day off): hours after the newest candle it sent may not exist there
    yet, so they are asked again next time instead of being recorded as missing."""
    fake.now = source_bars.time.iloc[-1] + 3 * DAY  # the exchange has had no candles for three days
    fake.clock_skew = -DAY
    with make_source("binance", fake) as source, pytest.warns(ExchangeClockWarning):
        result = sync_series(store, source, "BTCUSDT", "1h", source_bars.time.iloc[0], fake.now, now=fake.now)
        assert result.stored_bars == HOURS and store.known_missing("binance", "BTCUSDT", "1h") == []
        fake.clock_skew = pd.Timedelta(0)  # a sane clock: now the empty tail is the exchange's answer
        second = sync_series(store, source, "BTCUSDT", "1h", source_bars.time.iloc[0], fake.now, now=fake.now)
    assert second.stored_bars == 0 and second.missing_bars == 3 * 24 - 2  # the newest closed hour may come late
    assert store.known_missing("binance", "BTCUSDT", "1h") == [(span(source_bars)[1], fake.now.floor("1h") - DAY / 24)]


@pytest.mark.parametrize("exchange", ["bybit", "binance"])
def test_years_before_listing_are_not_walked_window_by_window(exchange, fake, store, source_bars):
    early = source_bars.time.iloc[0] - 3 * 365 * DAY  # 26,280 hours: 18 to 27 empty windows walked one by one
    with make_source(exchange, fake) as source:
        result = sync_series(store, source, "BTCUSDT", "1h", early, span(source_bars)[1], now=fake.now)
    pd.testing.assert_frame_equal(store.read_bars(exchange, "BTCUSDT", "1h"), source_bars)
    assert result.missing_bars == 3 * 365 * 24
    assert store.known_missing(exchange, "BTCUSDT", "1h") == [(early, source_bars.time.iloc[0])]
    requests = fake.kline_requests()
    probes = [r for r in requests if r.params["limit"] == "1"]
    data_windows = -(-HOURS // source.max_limit)
    if exchange == "binance":  # it answers from the first candle: one request finds it
        assert len(probes) == 1 and len(requests) == 1 + 1 + data_windows
    else:  # newest first: a binary search, about log2(27) probes; paging resumes up to a window early
        assert 1 <= len(probes) <= 6 and len(requests) <= 1 + 6 + data_windows + 1


@pytest.mark.parametrize("exchange", ["bybit", "binance"])
def test_recheck_gaps_asks_again_and_stores_what_comes_back(exchange, fake, store, source_bars):
    hole = source_bars.time.iloc[1200]
    fake.missing.add("BTCUSDT", hole, hole + pd.Timedelta(hours=7))
    with make_source(exchange, fake) as source:
        sync_series(store, source, "BTCUSDT", "1h", *span(source_bars), now=fake.now)
        assert len(store.known_missing(exchange, "BTCUSDT", "1h")) == 1
        fake.missing.clear()  # the exchange filled its hole
        fake.clear_requests()
        plain = sync_series(store, source, "BTCUSDT", "1h", *span(source_bars), now=fake.now)
        assert plain.status == "already up to date" and fake.kline_requests() == []
        again = sync_series(store, source, "BTCUSDT", "1h", *span(source_bars), now=fake.now, recheck_gaps=True)
    assert (again.rechecked_bars, again.planned_bars, again.stored_bars, again.missing_bars) == (7, 7, 7, 0)
    assert len(fake.kline_requests()) == 1
    assert store.known_missing(exchange, "BTCUSDT", "1h") == []
    pd.testing.assert_frame_equal(store.read_bars(exchange, "BTCUSDT", "1h"), source_bars)


def test_recheck_keeps_known_gaps_outside_the_range_and_re_records_true_ones(fake, store, source_bars):
    early = source_bars.time.iloc[0] - 10 * DAY
    with make_source("bybit", fake) as source:
        sync_series(store, source, "BTCUSDT", "1h", early, span(source_bars)[1], now=fake.now)
        assert store.known_missing("bybit", "BTCUSDT", "1h") == [(early, source_bars.time.iloc[0])]
        middle = early + 5 * DAY
        again = sync_series(store, source, "BTCUSDT", "1h", middle, span(source_bars)[1], now=fake.now,
                            recheck_gaps=True)
    assert again.rechecked_bars == again.missing_bars == 5 * 24  # asked again: still nothing there
    gaps = store.known_gaps("bybit", "BTCUSDT", "1h")
    assert list(zip(gaps.start, gaps.end, strict=True)) == [(early, middle), (middle, source_bars.time.iloc[0])]
    assert gaps.recorded_at[0] < gaps.recorded_at[1], "the part outside the range kept its stamp"


# ---- funding rates ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("exchange", ["bybit", "binance"])
def test_funding_sync_equals_the_served_series_after_faults(exchange, fake, store, source_bars):
    for kind in ("429", "500", "disconnect", "malformed", "empty"):
        fake.faults.add(kind, times=1, retry_after=0.01)
    timeouts = TimesOut(times=1, path_part="fund")
    start = source_bars.time.iloc[0] - 30 * DAY  # before the first funding: nothing there
    with make_source(exchange, fake, max_attempts=10, transport=timeouts) as source:
        result = sync_funding(store, source, "BTCUSDT", start, fake.now, now=fake.now)
    served = fake.funding("BTCUSDT")
    assert len(served) == HOURS // 8 and result.stored_rates == len(served)
    pd.testing.assert_frame_equal(store.read_funding(exchange, "BTCUSDT"), served)
    assert len(fake.faults) == 0 and timeouts.left == 0
    limit = 200 if exchange == "bybit" else 1000
    assert len([r for r in fake.funding_requests() if not r.fault]) == -(-len(served) // limit) + (
        len(served) % limit == 0)
    rates = read_funding(store, exchange, "BTCUSDT", "2019-11-01", "2019-11-02")
    assert list(rates.index) == [T("2019-11-01 00:00", tz="UTC"), T("2019-11-01 08:00", tz="UTC"),
                                 T("2019-11-01 16:00", tz="UTC")]
    assert rates.name == "funding_rate" and rates.dtype == "float64" and rates.index.name == "time"
    assert (rates.to_numpy() == served.set_index("time").loc[rates.index, "rate"].to_numpy()).all()


def test_funding_sync_is_incremental(fake, store, source_bars):
    first, last = source_bars.time.iloc[0], source_bars.time.iloc[-1]
    middle = first + 60 * DAY
    with make_source("binance", fake) as source:
        one = sync_funding(store, source, "BTCUSDT", middle, middle + 10 * DAY, now=fake.now)
        assert one.stored_rates == 30
        fake.clear_requests()
        assert sync_funding(store, source, "BTCUSDT", middle, middle + 10 * DAY, now=fake.now).requested == []
        assert fake.funding_requests() == []
        later = sync_funding(store, source, "BTCUSDT", last - 5 * DAY, fake.now, now=fake.now)  # disjoint: fills
        assert later.requested == [(middle + 10 * DAY, fake.now - pd.Timedelta(minutes=5))]
        earlier = sync_funding(store, source, "BTCUSDT", first - DAY, middle, now=fake.now)
        assert earlier.requested == [(first - DAY, middle)]
    pd.testing.assert_frame_equal(store.read_funding("binance", "BTCUSDT"), fake.funding("BTCUSDT"))
    assert store.funding_synced("binance", "BTCUSDT") == (first - DAY, fake.now - pd.Timedelta(minutes=5))


def test_funding_needs_a_perpetual_and_a_stored_series(fake, store):
    with make_source("bybit", fake, category="spot") as source, pytest.raises(ConfigError, match="perpetuals only"):
        sync_funding(store, source, "BTCUSDT", "2020-01-01", "2020-02-01", now=fake.now)
    with pytest.raises(DataError, match="no bybit BTCUSDT funding rates; fetch them with 'marketsynth fetch"):
        read_funding(store, "bybit", "BTCUSDT", "2020-01-01", "2020-02-01")
