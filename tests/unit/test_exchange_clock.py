"""Which clock decides that a candle has closed (``marketsynth.data.exchanges.clock``), without any server."""

import warnings

import pandas as pd
import pytest

from marketsynth.data.exchanges.clock import CLOCK_TOLERANCE, ClockCheck, ExchangeClockWarning

NOW = pd.Timestamp("2024-05-01 12:30:00", tz="UTC")


def ms(ts: pd.Timestamp) -> int:
    return ts.value // 1_000_000


class Endpoint:
    """A time endpoint that answers ``value`` (or raises it) and counts the calls."""

    def __init__(self, value):
        self.value, self.calls = value, 0

    def __call__(self):
        self.calls += 1
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


def test_a_sane_exchange_clock_decides_and_never_warns():
    endpoint = Endpoint(None)
    check = ClockCheck("bybit", "/v5/market/time", endpoint)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        behind = check.reading(NOW, ms(NOW - pd.Timedelta(minutes=2)))
        ahead = check.reading(NOW, ms(NOW + CLOCK_TOLERANCE))
    assert (behind.closed_by, behind.trusted, behind.label) == (NOW - pd.Timedelta(minutes=2), True, "bybit's clock")
    assert (ahead.closed_by, ahead.trusted) == (NOW, True), "the earlier of the two clocks"
    assert endpoint.calls == 0


@pytest.mark.parametrize("server_ms", [None, 0, -5])
def test_missing_or_zero_time_asks_the_endpoint_once_and_it_decides_when_it_agrees(server_ms):
    endpoint = Endpoint(ms(NOW - pd.Timedelta(seconds=30)))
    check = ClockCheck("bybit", "/v5/market/time", endpoint)
    with pytest.warns(ExchangeClockWarning) as caught:
        first = check.reading(NOW, server_ms)
        second = check.reading(NOW + pd.Timedelta(hours=1), server_ms)
    assert endpoint.calls == 1 and len(caught) == 1
    assert (first.closed_by, first.trusted, first.label) == (NOW - pd.Timedelta(seconds=30), True,
                                                             "bybit's /v5/market/time")
    assert second.closed_by == NOW + pd.Timedelta(hours=1) - pd.Timedelta(seconds=30), "the skew, not a frozen time"
    said = "no time" if server_ms is None else f"time {server_ms}"
    assert str(caught[0].message) == (
        f"bybit's answers carry {said} while our clock says 2024-05-01 12:30:00 UTC; its /v5/market/time says "
        "2024-05-01 12:29:30 UTC, which decides which candles have closed")


@pytest.mark.parametrize("endpoint_value", [None, RuntimeError("404"), "far"])
def test_a_far_clock_without_an_agreeing_endpoint_leaves_it_to_ours_untrusted(endpoint_value):
    far = NOW - pd.Timedelta(days=3)
    endpoint = Endpoint(ms(far) if endpoint_value == "far" else endpoint_value)
    check = ClockCheck("binance", "/fapi/v1/time", endpoint)
    with pytest.warns(ExchangeClockWarning) as caught:
        reading = check.reading(NOW, ms(far))
    assert (reading.closed_by, reading.trusted, reading.label) == (NOW, False, "our clock")
    message = str(caught[0].message)
    assert message.startswith("binance's answers carry time 2024-04-28 12:30:00 UTC (3 days behind ours) while our "
                              "clock says 2024-05-01 12:30:00 UTC; its /fapi/v1/time ")
    answered = "says 2024-04-28 12:30:00 UTC" if endpoint_value == "far" else "did not answer"
    assert f"/fapi/v1/time {answered}; deciding which candles have closed by our clock" in message
    # later answers with a sane clock are believed again, without another warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check.reading(NOW, ms(NOW)).trusted
