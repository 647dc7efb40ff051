"""The shared rate limiter and retry policy, with a fake clock, plus how sources read rate-limit headers."""

from __future__ import annotations

import random
import threading

import httpx
import pytest

from marketsynth.data.exchanges import BinanceSource, BybitSource
from marketsynth.data.exchanges.base import closest_symbol
from marketsynth.data.exchanges.binance import kline_weight
from marketsynth.data.exchanges.http import (
    RateLimiter,
    RetryPolicy,
    UnreachableError,
    http_status_error,
    parse_retry_after,
)
from marketsynth.errors import ExchangeError, TransientExchangeError


class FakeClock:
    """A clock that only moves when told to; ``sleep`` moves it (and records the wait)."""

    def __init__(self, start: float = 1_000_000.0):
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


def limiter(rate: float, clock: FakeClock, **options) -> RateLimiter:
    return RateLimiter(rate, clock=clock, sleep=clock.sleep, **options)


def test_burst_then_steady_rate():
    clock = FakeClock()
    bucket = limiter(10, clock)  # burst defaults to one second's worth
    assert [bucket.acquire() for _ in range(10)] == [0.0] * 10
    assert bucket.acquire() == pytest.approx(0.1)
    start = clock.now
    for _ in range(50):
        bucket.acquire()
    assert clock.now - start == pytest.approx(5.0), "50 more requests take 5 s at 10 per second"


def test_idle_time_refills_only_up_to_the_burst():
    clock = FakeClock()
    bucket = limiter(2, clock, burst=4)
    for _ in range(4):
        bucket.acquire()
    clock.now += 3600
    assert [bucket.acquire() for _ in range(4)] == [0.0] * 4
    assert bucket.acquire() == pytest.approx(0.5)


def test_weight_budget_paces_heavy_requests():
    clock = FakeClock()
    bucket = limiter(100, clock, weight_per_minute=600, weight_burst=20)  # 10 weight per second
    assert bucket.acquire(weight=10) == 0.0
    assert bucket.acquire(weight=10) == 0.0
    assert bucket.acquire(weight=10) == pytest.approx(1.0)
    assert bucket.acquire(weight=5) == pytest.approx(0.5)
    assert bucket.acquire(weight=1) == pytest.approx(0.1)


def test_pause_until_holds_back_every_caller():
    clock = FakeClock()
    bucket = limiter(100, clock)
    bucket.pause_until(clock.now + 7.5)
    assert bucket.acquire() == pytest.approx(7.5)
    assert bucket.acquire() == 0.0
    bucket.pause_for(2)
    bucket.pause_until(clock.now + 1)  # an earlier deadline never shortens a pause
    assert bucket.acquire() == pytest.approx(2.0)


def test_concurrent_callers_are_spaced_out_fairly():
    clock = FakeClock()
    clock.sleep = clock.sleeps.append  # the clock stands still: every wait is a reservation
    bucket = limiter(10, clock, burst=1)
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            wait = bucket.acquire()
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(waits) == pytest.approx([k / 10 for k in range(200)]), "each request got its own slot"


def test_limiter_rejects_a_zero_rate():
    with pytest.raises(ValueError):
        RateLimiter(0)


def retry_policy(clock: FakeClock, **options) -> RetryPolicy:
    options = {"max_attempts": 5, "backoff": 0.5, "max_backoff": 4.0, **options}
    return RetryPolicy(sleep=clock.sleep, rng=random.Random(0), **options)


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    policy = retry_policy(FakeClock(), max_attempts=10)
    for attempt, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (8, 4.0)]:
        delays = [policy.delay(attempt) for _ in range(50)]
        assert all(cap / 2 <= d <= cap for d in delays)
        assert len(set(delays)) > 1, "jittered"
    assert policy.delay(1, retry_after=9.0) == 9.0, "Retry-After wins over a shorter backoff"
    assert policy.delay(5, retry_after=0.1) >= 2.0, "and never shortens it"


def test_transient_errors_are_retried_until_success():
    clock = FakeClock()
    answers = iter([TransientExchangeError("HTTP 503"), TransientExchangeError("429", retry_after=6), "ok"])

    def flaky():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert retry_policy(clock).call(flaky, what="bybit klines") == "ok"
    assert len(clock.sleeps) == 2 and clock.sleeps[1] >= 6


def test_retry_budget_ends_in_one_line_error():
    clock = FakeClock()
    calls = []

    def down():
        calls.append(1)
        raise TransientExchangeError("binance HTTP 503 Service Unavailable")

    with pytest.raises(ExchangeError) as failure:
        retry_policy(clock, max_attempts=4).call(down, what="binance klines BTCUSDT 1h")
    assert not isinstance(failure.value, TransientExchangeError)
    assert str(failure.value) == (
        "binance klines BTCUSDT 1h failed after 4 attempts; last error: binance HTTP 503 Service Unavailable"
    )
    assert len(calls) == 4 and len(clock.sleeps) == 3


def test_permanent_errors_are_not_retried():
    clock = FakeClock()
    calls = []

    def refused():
        calls.append(1)
        raise ExchangeError("Bybit does not list symbol 'X'")

    with pytest.raises(ExchangeError, match="does not list"):
        retry_policy(clock).call(refused, what="bybit klines")
    assert len(calls) == 1 and clock.sleeps == []


def test_unreachable_after_retries_says_what_to_do():
    def refused():
        raise UnreachableError("cannot reach bybit at http://127.0.0.1:9: connection refused")

    with pytest.raises(ExchangeError) as failure:
        retry_policy(FakeClock(), max_attempts=2).call(refused, what="bybit klines")
    assert str(failure.value) == (
        "cannot reach bybit at http://127.0.0.1:9: connection refused; "
        "check the network or --base-url, or import a CSV with 'marketsynth data import'"
    )


def test_parse_retry_after():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == pytest.approx(10.0)


def response(status: int, headers: dict | None = None, body: bytes = b"") -> httpx.Response:
    return httpx.Response(status, headers=headers, content=body, request=httpx.Request("GET", "http://x/y"))


def test_http_status_classification():
    assert http_status_error(response(200), exchange="bybit") is None
    assert http_status_error(response(400), exchange="binance") is None, "a 400 is the exchange's own error"
    for status in (403, 418, 429, 500, 502, 503, 504):
        error = http_status_error(response(status, {"Retry-After": "3"}), exchange="binance")
        assert isinstance(error, TransientExchangeError) and error.retry_after == 3.0
    ban = http_status_error(response(418, {"Retry-After": "7200"}), exchange="binance")
    assert type(ban) is ExchangeError and "7200 s" in str(ban), "a long IP ban is reported, not waited out"


def test_kline_weight_table():
    assert [kline_weight(n) for n in (1, 99, 100, 499, 500, 1000, 1001, 1500)] == [1, 1, 2, 2, 5, 5, 10, 10]


def test_bybit_waits_for_the_reset_when_no_requests_are_left():
    clock = FakeClock(start=1_700_000_000.0)
    with BybitSource(clock=clock, sleep=clock.sleep) as source:
        source._observe(response(200, {"X-Bapi-Limit-Status": "3", "X-Bapi-Limit-Reset-Timestamp": "1700000009000"}))
        assert source.limiter.acquire() == 0.0
        source._observe(response(200, {"X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": "1700000009000"}))
        assert source.limiter.acquire() == pytest.approx(9.0)


def test_binance_waits_for_the_next_minute_near_the_weight_limit():
    clock = FakeClock(start=1_700_000_015.0)  # 35 s into a minute
    with BinanceSource(clock=clock, sleep=clock.sleep) as source:
        source._observe(response(200, {"X-MBX-USED-WEIGHT-1M": "1200"}))
        assert source.limiter.acquire(10) == 0.0
        source._observe(response(200, {"X-MBX-USED-WEIGHT-1M": "2200"}))
        assert source.limiter.acquire(10) == pytest.approx(25.5)


def test_binance_default_pace_stays_under_the_weight_budget():
    clock = FakeClock()
    with BinanceSource(clock=clock, sleep=clock.sleep) as source:
        start = clock.now
        sent = 0
        while clock.now - start < 60:
            source.limiter.acquire(kline_weight(source.max_limit))
            sent += 1
    assert sent * kline_weight(1500) <= 2400, "at most the exchange's budget in any first minute"


def test_closest_symbol():
    known = ["BTCUSDC", "BTCUSDT", "ETHUSDT", "BTCPERP"]
    assert closest_symbol("BTCUSD", known) == "BTCUSDT"
    assert closest_symbol("ETHUDST", known) == "ETHUSDT"
    assert closest_symbol("DOGEJPY", known) is None
    assert closest_symbol("BTCUSDT", []) is None
