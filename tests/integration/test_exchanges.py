"""Bybit and Binance sources against the fake exchange server on 127.0.0.1 (real HTTP, no network).

The fake serves the shared BTCUSDT hourly file; every fetch is compared with that file exactly.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import httpx
import pandas as pd
import pytest

from marketsynth.data.exchanges import EXCHANGES, get_source
from marketsynth.data.exchanges.clock import ExchangeClockWarning
from marketsynth.errors import ConfigError, ExchangeError
from marketsynth.testing import FakeExchange

HOUR = pd.Timedelta(hours=1)
STEPS = {"1h": HOUR, "4h": 4 * HOUR, "1d": 24 * HOUR}
LIMITS = {"bybit": 1000, "binance": 1500}
START_ROW, HOURS = 10_000, 5_200  # several thousand hours from inside the file, not aligned to any page

# A clock warning nobody expected is a failure: tests that expect one say so with pytest.warns.
pytestmark = pytest.mark.filterwarnings("error::marketsynth.data.exchanges.clock.ExchangeClockWarning")


class Sleeps(list):
    """A ``sleep`` that records instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def make_source(fake_exchange):
    made = []

    def make(name: str, fake: FakeExchange = fake_exchange, **options):
        options = {"backoff": 0.01, "max_backoff": 0.05, "timeout": 10.0, "sleep": Sleeps(), **options}
        source = get_source(name, base_url=fake.base_url, **options)
        source.sleeps = options["sleep"]
        source.fake = fake  # ``fetch`` asks as of the fake's market time unless told otherwise
        made.append(source)
        return source

    yield make
    for source in made:
        source.close()


def fetch(source, start, end, timeframe="1h", **kwargs) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Every page of BTCUSDT in [start, end); ``now`` defaults to the fake's market clock (our clock agrees)."""
    if hasattr(source, "fake"):
        kwargs.setdefault("now", source.fake.now)
    pages = list(source.fetch_bars("BTCUSDT", timeframe, start, end, **kwargs))
    frame = pd.concat(pages, ignore_index=True) if pages else None
    return frame, pages


def window(bars: pd.DataFrame, first: int = START_ROW, count: int = HOURS):
    expected = bars.iloc[first : first + count].reset_index(drop=True)
    return expected, expected.time.iloc[0], expected.time.iloc[-1] + HOUR


def assert_pages_contiguous(pages: list[pd.DataFrame], limit: int) -> None:
    for page in pages:
        assert 0 < len(page) <= limit
        assert page.time.is_monotonic_increasing and not page.time.duplicated().any()
    for before, after in zip(pages, pages[1:], strict=False):
        assert before.time.iloc[-1] < after.time.iloc[0]


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_range_of_thousands_of_hours_equals_source(exchange, fake_exchange, make_source, btc_1h_bars):
    expected, start, end = window(btc_1h_bars)
    source = make_source(exchange)
    got, pages = fetch(source, start, end)
    pd.testing.assert_frame_equal(got, expected)
    limit = LIMITS[exchange]
    assert_pages_contiguous(pages, limit)
    assert [len(p) for p in pages] == [limit] * (HOURS // limit) + [HOURS % limit]  # 5200 splits unevenly
    requests = fake_exchange.kline_requests()
    assert len(requests) == len(pages) and all(r.status == 200 for r in requests)


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_page_windows_are_contiguous_and_exact(exchange, fake_exchange, make_source, btc_1h_bars):
    limit = LIMITS[exchange]
    expected, start, end = window(btc_1h_bars, count=2 * limit + 1)
    got, pages = fetch(make_source(exchange), start, end)
    pd.testing.assert_frame_equal(got, expected)
    assert [len(p) for p in pages] == [limit, limit, 1]
    keys = ("start", "end") if exchange == "bybit" else ("startTime", "endTime")
    spans = [(int(r.params[keys[0]]), int(r.params[keys[1]])) for r in fake_exchange.kline_requests()]
    hour_ms, start_ms = 3_600_000, start.value // 1_000_000
    assert spans == [
        (start_ms, start_ms + limit * hour_ms - 1),
        (start_ms + limit * hour_ms, start_ms + 2 * limit * hour_ms - 1),
        (start_ms + 2 * limit * hour_ms, start_ms + (2 * limit + 1) * hour_ms - 1),
    ]
    assert all(r.params["limit"] == str(limit) for r in fake_exchange.kline_requests())


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_whole_history_with_the_default_clock_leaves_out_the_open_candle(
    exchange, fake_exchange, make_source, btc_1h_bars
):
    served = fake_exchange.candles("BTCUSDT", "1h")
    assert len(served) == len(btc_1h_bars) + 1, "the fake serves one open candle after the data"
    start = btc_1h_bars.time.iloc[0] - pd.Timedelta(days=3)  # before listing: empty windows are skipped
    began, market = time.time(), fake_exchange.now.timestamp()
    source = make_source(exchange, clock=lambda: market + time.time() - began)  # our clock: the market's time
    pages = list(source.fetch_bars("BTCUSDT", "1h", start, pd.Timestamp("2100-01-01", tz="UTC")))
    pd.testing.assert_frame_equal(pd.concat(pages, ignore_index=True), btc_1h_bars)


@pytest.mark.parametrize("exchange", EXCHANGES)
@pytest.mark.parametrize("timeframe", ["1h", "1d"])
def test_open_candle_is_never_returned(exchange, timeframe, fake_exchange, make_source, btc_1h_bars):
    open_hour = btc_1h_bars.time.iloc[20_000].floor("1D") + pd.Timedelta(hours=5)  # the day is open too
    fake_exchange.now = open_hour + pd.Timedelta(minutes=30)
    start = open_hour - pd.Timedelta(days=10)
    source = make_source(exchange)
    ahead = fake_exchange.now + pd.Timedelta(minutes=4, seconds=50)  # ours slightly ahead: the exchange's decides
    for now in (fake_exchange.now, ahead):
        got, _ = fetch(source, start, open_hour + pd.Timedelta(days=5), timeframe, now=now)
        step = STEPS[timeframe]
        assert (got.time + step).max() <= fake_exchange.now
        assert got.time.iloc[-1] == open_hour.floor(step) - step
    earlier = fake_exchange.now - pd.Timedelta(hours=3)  # our clock behind the exchange's: ours decides
    with pytest.warns(ExchangeClockWarning, match="3 h ahead of ours"):
        got, _ = fetch(source, start, open_hour, "1h", now=earlier)
    assert got.time.iloc[-1] == earlier.floor("1h") - HOUR


@pytest.mark.parametrize("exchange", EXCHANGES)
@pytest.mark.parametrize("skew", [pd.Timedelta(hours=-6), pd.Timedelta(hours=6)])
def test_exchange_clock_far_from_ours_warns_once_and_ours_decides(exchange, skew, fake_exchange, make_source,
                                                                   btc_1h_bars):
    expected, start, end = window(btc_1h_bars, count=3200)
    fake_exchange.now = end + pd.Timedelta(minutes=10)  # the last hour of the window closed 10 minutes ago
    fake_exchange.clock_skew = skew
    source = make_source(exchange)
    with pytest.warns(ExchangeClockWarning) as caught:
        got, pages = fetch(source, start, end)
    pd.testing.assert_frame_equal(got, expected)
    assert len(caught) == 1 and len(pages) >= 3, "one warning for the source, not one per page"
    side = "behind" if skew < pd.Timedelta(0) else "ahead of"
    reported = fake_exchange.now + skew
    message = str(caught[0].message)
    assert f"time {reported:%Y-%m-%d %H:%M:%S} UTC (6 h {side} ours)" in message
    assert f"our clock says {fake_exchange.now:%Y-%m-%d %H:%M:%S} UTC" in message
    assert f"its {source.time_path} says {reported:%Y-%m-%d %H:%M:%S} UTC; deciding" in message
    assert sum(r.path == source.time_path for r in fake_exchange.requests) == 1


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_time_endpoint(exchange, fake_exchange, make_source):
    fake_exchange.clock_skew = pd.Timedelta(seconds=-7)
    source = make_source(exchange)
    assert source.server_time_ms() == (fake_exchange.now - pd.Timedelta(seconds=7)).value // 1_000_000


def test_bybit_answers_without_a_time_field_use_the_date_header(fake_exchange, make_source, btc_1h_bars):
    expected, start, end = window(btc_1h_bars, count=500)
    fake_exchange.envelope_time = "omit"
    got, _ = fetch(make_source("bybit"), start, end)  # no warning: the Date header is a sane clock
    pd.testing.assert_frame_equal(got, expected)


FAULTS = [
    ("429", {"retry_after": 0.5}),
    ("418", {"retry_after": 0.5}),
    ("403", {}),
    ("bybit_10006", {"reset": 0.2}),
    ("500", {}),
    ("502", {}),
    ("503", {}),
    ("disconnect", {}),
    ("malformed", {}),
    ("empty", {}),
]


@pytest.mark.parametrize("exchange", EXCHANGES)
@pytest.mark.parametrize(("kind", "options"), FAULTS, ids=[kind for kind, _ in FAULTS])
def test_faults_are_retried_and_data_stays_exact(exchange, kind, options, fake_exchange, make_source, btc_1h_bars):
    expected, start, end = window(btc_1h_bars, count=3200)
    fake_exchange.faults.add(kind, times=2, **options)
    source = make_source(exchange)
    got, pages = fetch(source, start, end)
    pd.testing.assert_frame_equal(got, expected)
    assert not got.time.duplicated().any()
    assert len(fake_exchange.faults) == 0, "every injected fault was served"
    faulted = [r for r in fake_exchange.kline_requests() if r.fault]
    assert len(faulted) == 2
    assert len(fake_exchange.kline_requests()) == len(pages) + len(faulted)


class TimesOut(httpx.HTTPTransport):
    """The real transport, except that the first ``times`` requests time out at once (no real wait)."""

    def __init__(self, times: int):
        super().__init__()
        self.left = times

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.left:
            self.left -= 1
            raise httpx.ReadTimeout("timed out (injected)", request=request)
        return super().handle_request(request)


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_timeouts_are_retried_and_data_stays_exact(exchange, fake_exchange, make_source, btc_1h_bars):
    expected, start, end = window(btc_1h_bars, count=3200)
    transport = TimesOut(times=2)
    source = make_source(exchange, transport=transport)
    got, pages = fetch(source, start, end)
    pd.testing.assert_frame_equal(got, expected)
    assert transport.left == 0 and len(fake_exchange.kline_requests()) == len(pages)
    assert len(source.sleeps) >= 2, "each timeout was followed by a backoff"


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_timeouts_on_every_attempt_are_one_error(exchange, fake_exchange, make_source, btc_1h_bars):
    _, start, end = window(btc_1h_bars, count=100)
    source = make_source(exchange, transport=TimesOut(times=99), max_attempts=3, timeout=4.0)
    with pytest.raises(ExchangeError) as failure:
        fetch(source, start, end)
    message = str(failure.value)
    assert "failed after 3 attempts" in message and "did not answer within 4 s (ReadTimeout)" in message
    assert "\n" not in message and fake_exchange.requests == []


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_faults_injected_while_fetching(exchange, fake_exchange, make_source, btc_1h_bars):
    expected, start, end = window(btc_1h_bars)
    source_pages = make_source(exchange).fetch_bars("BTCUSDT", "1h", start, end, now=fake_exchange.now)
    pages = [next(source_pages)]
    for kind in ("503", "malformed", "429", "empty"):
        fake_exchange.faults.add(kind, retry_after=0.1)
    pages += list(source_pages)
    pd.testing.assert_frame_equal(pd.concat(pages, ignore_index=True), expected)


@pytest.mark.parametrize(
    ("exchange", "kind", "wait"), [("binance", "429", 7), ("binance", "418", 3), ("bybit", "429", 5)]
)
def test_retry_after_is_honoured(exchange, kind, wait, fake_exchange, make_source, btc_1h_bars):
    expected, start, end = window(btc_1h_bars, count=100)
    fake_exchange.faults.add(kind, retry_after=wait)
    source = make_source(exchange)
    got, _ = fetch(source, start, end)
    pd.testing.assert_frame_equal(got, expected)
    assert max(source.sleeps) >= wait


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_retry_budget_is_bounded(exchange, fake_exchange, make_source, btc_1h_bars):
    _, start, end = window(btc_1h_bars, count=100)
    fake_exchange.faults.add("503", times=None)
    with pytest.raises(ExchangeError) as failure:
        fetch(make_source(exchange, max_attempts=3), start, end)
    message = str(failure.value)
    assert "failed after 3 attempts" in message and "503" in message and "\n" not in message
    assert len(fake_exchange.kline_requests()) == 3


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_unreachable_exchange_says_what_to_do(exchange, make_source, fake_exchange):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    source = get_source(exchange, base_url=url, max_attempts=2, backoff=0.01, sleep=Sleeps())
    with source, pytest.raises(ExchangeError) as failure:
        list(source.fetch_bars("BTCUSDT", "1h", "2021-01-01", "2021-01-02"))
    message = str(failure.value)
    assert message.startswith(f"cannot reach {exchange} at {url}: ")
    assert message.endswith("; check the network or --base-url, or import a CSV with 'marketsynth data import'")
    assert "\n" not in message


@pytest.fixture
def listing_fake(btc_1h_bars):
    listed = ("ETHUSDT", "BTCUSDC", "SOLUSDT", "XRPUSDT", "BTCPERP")
    with FakeExchange({"BTCUSDT": btc_1h_bars.iloc[:100]}, listed=listed, instruments_page_size=2) as fake:
        yield fake


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_unknown_symbol_suggests_the_closest(exchange, listing_fake, make_source):
    source = make_source(exchange, fake=listing_fake)
    where = "in category 'linear'" if exchange == "bybit" else "on USDⓈ-M futures"
    name = exchange.capitalize()
    expected = f"{name} does not list symbol 'BTCUSD' {where} (did you mean BTCUSDT?)"
    with pytest.raises(ExchangeError) as failure:
        list(source.fetch_bars("BTCUSD", "1h", "2019-09-09", "2019-09-10"))
    assert str(failure.value) == expected
    with pytest.raises(ExchangeError, match=r"\(did you mean ETHUSDT\?\)"):
        source.validate_symbol("ETHUSTD")
    with pytest.raises(ExchangeError) as failure:
        source.validate_symbol("DOGEJPY")
    assert "did you mean" not in str(failure.value)
    source.validate_symbol("btcusdt")
    source.validate_symbol("BTCPERP")  # on the last page of Bybit's paginated instrument list
    assert source.list_symbols() == sorted(["BTCUSDT", "ETHUSDT", "BTCUSDC", "SOLUSDT", "XRPUSDT", "BTCPERP"])


def test_bybit_unknown_category_lists_nothing(listing_fake, make_source):
    source = make_source("bybit", fake=listing_fake, category="spot")
    with pytest.raises(ExchangeError, match="in category 'spot'"):
        list(source.fetch_bars("BTCUSDT", "1h", "2019-09-09", "2019-09-10"))
    with pytest.raises(ConfigError, match="no category 'options'"):
        make_source("bybit", category="options")


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_bad_intervals(exchange, make_source, monkeypatch):
    source = make_source(exchange)
    with pytest.raises(ConfigError, match="unknown interval '7m'"):
        source.fetch_bars("BTCUSDT", "7m", "2021-01-01", "2021-01-02")
    if exchange == "bybit":
        with pytest.raises(ConfigError, match="Bybit has no 8h candles; use one of 1m, 3m, .*12h, 1d, 1w, 1M"):
            source.fetch_bars("BTCUSDT", "8h", "2021-01-01", "2021-01-02")
    monkeypatch.setattr(source, "_code_for", lambda tf: "7x")  # the exchange itself refuses it
    with pytest.raises(ExchangeError, match="rejected interval '7x'"):
        list(source.fetch_bars("BTCUSDT", "1h", "2021-01-01", "2021-01-02"))


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_missing_hours_are_simply_absent(exchange, fake_exchange, make_source, btc_1h_bars):
    expected, start, end = window(btc_1h_bars, count=3000)
    holes = [(expected.time.iloc[999], 3), (expected.time.iloc[1490], 30), (expected.time.iloc[2990], 10)]
    for hole_start, hours in holes:
        fake_exchange.missing.add("BTCUSDT", hole_start, hole_start + hours * HOUR)
    lacking = pd.concat([(expected.time >= s) & (expected.time < s + n * HOUR) for s, n in holes], axis=1).any(axis=1)
    got, _ = fetch(make_source(exchange), start, end)
    pd.testing.assert_frame_equal(got, expected.loc[~lacking].reset_index(drop=True))


@pytest.mark.parametrize("exchange", EXCHANGES)
@pytest.mark.parametrize(("spelling", "canonical"), [("60", "1h"), ("240", "4h"), ("D", "1d"), ("1D", "1d")])
def test_intervals_in_both_spellings(exchange, spelling, canonical, fake_exchange, make_source, btc_1h_bars):
    _, start, end = window(btc_1h_bars, count=24 * 60)
    source = make_source(exchange)
    by_spelling, _ = fetch(source, start, end, spelling)
    by_name, _ = fetch(source, start, end, canonical)
    pd.testing.assert_frame_equal(by_spelling, by_name)
    code = source.interval_code(canonical)
    assert {r.params["interval"] for r in fake_exchange.kline_requests()} == {code}


def pandas_resample(bars: pd.DataFrame, rule: pd.Timedelta) -> pd.DataFrame:
    """An independent resample to check the fake's: left-closed, left-labelled, aligned to the epoch."""
    agg = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    out = bars.resample(rule, on="time").agg(agg).dropna(subset=["open"]).reset_index()
    return out[["time", "open", "high", "low", "close", "volume"]]


@pytest.mark.parametrize("exchange", EXCHANGES)
@pytest.mark.parametrize("timeframe", ["4h", "1d"])
def test_resampled_intervals_are_correct(exchange, timeframe, fake_exchange, make_source, btc_1h_bars):
    step = STEPS[timeframe]
    expected = pandas_resample(btc_1h_bars, step)
    start, end = expected.time.iloc[0], expected.time.iloc[-1] + step
    expected = expected[expected.time + step <= fake_exchange.now]  # the last one holds "now": still open
    got, pages = fetch(make_source(exchange), start, end, timeframe)
    assert_pages_contiguous(pages, LIMITS[exchange])
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12)
    assert got.time.iloc[0] == btc_1h_bars.time.iloc[0].floor(step)  # a partial first bucket is a candle too


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_weeks_and_months(exchange, fake_exchange, make_source, btc_1h_bars):
    source = make_source(exchange)
    for timeframe in ("1w", "1M"):
        served = fake_exchange.candles("BTCUSDT", timeframe).iloc[:-1]  # all but the open candle
        got, _ = fetch(source, "2019-01-01", "2030-01-01", timeframe)
        pd.testing.assert_frame_equal(got, served.reset_index(drop=True))
    assert got.time.iloc[-1] == pd.Timestamp("2023-05-01", tz="UTC")
    assert (fake_exchange.candles("BTCUSDT", "1w").time.dt.day_of_week == 0).all()


def test_bybit_rate_limit_headers_pause_the_next_request(fake_exchange, make_source, btc_1h_bars):
    expected, start, end = window(btc_1h_bars, count=3000)
    fake_exchange.faults.add("exhausted", reset=30)
    source = make_source("bybit")
    got, _ = fetch(source, start, end)
    pd.testing.assert_frame_equal(got, expected)
    assert 25 < max(source.sleeps) <= 30, "waited for X-Bapi-Limit-Reset-Timestamp"


def test_binance_used_weight_near_the_limit_waits_for_the_next_minute(fake_exchange, make_source, btc_1h_bars):
    expected, start, end = window(btc_1h_bars, count=3000)
    fake_exchange.faults.add("exhausted")
    ticks = iter(range(10**6)).__next__  # a clock at the start of a minute, 1 ms further each time it is read
    source = make_source("binance", clock=lambda: 999_999_960 + ticks() * 1e-3)
    got, _ = fetch(source, start, end)
    pd.testing.assert_frame_equal(got, expected)
    assert 59 < max(source.sleeps) <= 60.5, "paused until the minute turned"


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_sources_work_side_by_side_in_threads(exchange, fake_exchange, make_source, btc_1h_bars):
    ranges = [window(btc_1h_bars, first=first, count=2500) for first in (0, 5_000, 12_000, 30_000)]
    shared = make_source(exchange)
    results: dict[int, pd.DataFrame] = {}

    def run(index: int, source) -> None:
        _, start, end = ranges[index]
        results[index] = fetch(source, start, end)[0]

    threads = [threading.Thread(target=run, args=(i, shared if i % 2 else make_source(exchange))) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for index, (expected, _, _) in enumerate(ranges):
        pd.testing.assert_frame_equal(results[index], expected)


def test_get_source():
    assert EXCHANGES == ("bybit", "binance")
    with get_source(" Binance ") as source:
        assert (source.name, source.max_limit, source.base_url) == (
            "binance",
            1500,
            "https://fapi.binance.com",
        )
    with get_source("bybit", category="spot") as source:
        assert (source.name, source.max_limit, source.category) == ("bybit", 1000, "spot")
        assert source.base_url == "https://api.bybit.com"
    with pytest.raises(ConfigError) as failure:
        get_source("kraken")
    assert str(failure.value) == "unknown exchange 'kraken'; use bybit or binance"


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_wrong_base_url_is_not_retried(exchange, fake_exchange, make_source):
    source = get_source(exchange, base_url=fake_exchange.base_url + "/api", sleep=Sleeps())
    with source, pytest.raises(ExchangeError) as failure:
        list(source.fetch_bars("BTCUSDT", "1h", "2021-01-01", "2021-01-02"))
    assert str(failure.value).startswith(f"{exchange} answered HTTP 404 to /api/")
    assert str(failure.value).endswith("; check --base-url")
    assert len(fake_exchange.requests) == 1


def test_standalone_server(btc_1h_bars, tmp_path):
    csv = tmp_path / "btc.csv"
    frame = btc_1h_bars.iloc[:500].copy()
    frame["time"] = frame.time.astype("int64") // 1000  # a Binance export: open time in ms
    frame.to_csv(csv, index=False)
    command = [sys.executable, "-m", "marketsynth.testing.fake_exchange", "--csv", str(csv), "--port", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server:
        try:
            banner = server.stdout.readline()
            url = banner.split(" at ")[1].split()[0]
            market_now = btc_1h_bars.time.iloc[499] + pd.Timedelta(minutes=90)  # its default: inside the next hour
            with get_source("binance", base_url=url) as source:
                got = pd.concat(source.fetch_bars("BTCUSDT", "1h", "2019-09-01", "2030-01-01", now=market_now))
            pd.testing.assert_frame_equal(got.reset_index(drop=True), btc_1h_bars.iloc[:500])
        finally:
            server.terminate()


# ---- funding history -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("exchange", EXCHANGES)
def test_funding_history_pages_through_the_whole_series(exchange, fake_exchange, make_source, btc_1h_bars):
    served = fake_exchange.funding("BTCUSDT")
    assert len(served) == 4170 and (served.time.dt.hour % 8 == 0).all() and (served.time.dt.minute == 0).all()
    source = make_source(exchange)
    start = btc_1h_bars.time.iloc[0] - pd.Timedelta(days=30)
    pages = list(source.fetch_funding("BTCUSDT", start, fake_exchange.now, now=fake_exchange.now))
    got = pd.concat([p.rates for p in pages]).sort_values("time", ignore_index=True)
    pd.testing.assert_frame_equal(got, served)
    requests = fake_exchange.funding_requests()
    assert len(requests) == len(pages)
    if exchange == "bybit":  # 200 a page, newest first, both ends always sent
        assert [len(p.rates) for p in pages] == [200] * 20 + [170]
        assert pages[0].rates.time.iloc[-1] == served.time.iloc[-1]
        assert all({"startTime", "endTime"} <= set(r.params) and r.params["limit"] == "200" for r in requests)
    else:  # 1000 a page, oldest first
        assert [len(p.rates) for p in pages] == [1000] * 4 + [170]
        assert pages[0].rates.time.iloc[0] == served.time.iloc[0]
        assert all(r.params["limit"] == "1000" for r in requests)


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_funding_range_is_start_inclusive_end_exclusive(exchange, fake_exchange, make_source):
    source = make_source(exchange)
    lo, hi = pd.Timestamp("2021-01-01", tz="UTC"), pd.Timestamp("2021-01-03", tz="UTC")
    rates = pd.concat([p.rates for p in source.fetch_funding("btcusdt", lo, hi, now=fake_exchange.now)])
    assert list(rates.time) == list(pd.date_range(lo, hi, freq="8h", inclusive="left").as_unit("us"))
    served = fake_exchange.funding("BTCUSDT").set_index("time")
    assert (rates.rate.to_numpy() == served.loc[rates.time, "rate"].to_numpy()).all()


def test_bybit_funding_refuses_start_time_alone_as_documented(fake_exchange):
    url = f"{fake_exchange.base_url}/v5/market/funding/history"
    answer = httpx.get(url, params={"category": "linear", "symbol": "BTCUSDT", "startTime": 1609459200000}).json()
    assert answer["retCode"] == 10001
    answer = httpx.get(url, params={"category": "linear", "symbol": "BTCUSDT", "endTime": 1609459200000}).json()
    times = [int(item["fundingRateTimestamp"]) for item in answer["result"]["list"]]
    assert len(times) == 200 and times == sorted(times, reverse=True) and times[0] == 1609459200000


def test_binance_funding_without_times_answers_the_latest_200(fake_exchange):
    rows = httpx.get(f"{fake_exchange.base_url}/fapi/v1/fundingRate", params={"symbol": "BTCUSDT"}).json()
    assert len(rows) == 100  # the default limit
    rows = httpx.get(f"{fake_exchange.base_url}/fapi/v1/fundingRate",
                     params={"symbol": "BTCUSDT", "limit": 1000}).json()
    served = fake_exchange.funding("BTCUSDT")
    assert len(rows) == 200 and rows[-1]["fundingTime"] == served.time.iloc[-1].value // 1_000_000
    assert set(rows[0]) == {"symbol", "fundingRate", "fundingTime", "markPrice"}


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_funding_faults_are_retried(exchange, fake_exchange, make_source):
    for kind in ("429", "503", "disconnect", "malformed"):
        fake_exchange.faults.add(kind, retry_after=0.01)
    source = make_source(exchange)
    lo, hi = pd.Timestamp("2021-01-01", tz="UTC"), pd.Timestamp("2021-06-01", tz="UTC")
    rates = pd.concat([p.rates for p in source.fetch_funding("BTCUSDT", lo, hi, now=fake_exchange.now)])
    served = fake_exchange.funding("BTCUSDT")
    pd.testing.assert_frame_equal(rates.sort_values("time", ignore_index=True),
                                  served[(served.time >= lo) & (served.time < hi)].reset_index(drop=True))
    assert len(fake_exchange.faults) == 0
