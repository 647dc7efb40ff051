import numpy as np
import pandas as pd
import pytest

from marketsynth.errors import ConfigError
from marketsynth.timeframes import parse_timeframe, to_ms


@pytest.mark.parametrize(("spelling", "name"), [("60", "1h"), ("1h", "1h"), ("D", "1d"), ("1d", "1d"), ("15", "15m"),
                                                 ("W", "1w"), ("M", "1M"), ("1M", "1M"), ("1m", "1m"), ("240", "4h")])
def test_both_spellings(spelling, name):
    assert parse_timeframe(spelling).name == name


def test_unknown_interval_suggests():
    with pytest.raises(ConfigError, match=r"unknown interval '1hh' \(did you mean 1h\?\)"):
        parse_timeframe("1hh")


def test_open_times_are_aligned_and_end_exclusive():
    tf = parse_timeframe("4h")
    times = tf.open_times(pd.Timestamp("2021-01-01 01:00", tz="UTC"), pd.Timestamp("2021-01-01 12:00", tz="UTC"))
    assert [t.hour for t in times] == [4, 8]


def test_weeks_open_on_monday_and_months_on_the_first():
    week = parse_timeframe("1w").floor(pd.Timestamp("2021-01-07 15:00", tz="UTC"))
    assert week == pd.Timestamp("2021-01-04", tz="UTC") and week.weekday() == 0
    month = parse_timeframe("1M")
    assert month.floor(pd.Timestamp("2021-02-17 03:00", tz="UTC")) == pd.Timestamp("2021-02-01", tz="UTC")
    assert list(month.open_times("2021-01-15", "2021-04-01").month) == [2, 3]


def test_naive_times_are_utc():
    assert to_ms("2021-01-01") == 1609459200000
    assert to_ms(pd.Timestamp("2021-01-01 02:00", tz="Europe/Berlin")) == 1609462800000


def test_bars_per_day_and_position_in_day():
    from marketsynth.timeframes import bars_per_day, position_in_day

    hourly = pd.date_range("2024-03-01 05:00", periods=50, freq="1h", tz="UTC")
    assert bars_per_day(hourly) == 24 and bars_per_day(hourly, "15m") == 96
    assert bars_per_day(pd.date_range("2024-03-01", periods=10, freq="1D", tz="UTC")) == 0  # no intraday cycle
    assert bars_per_day(pd.date_range("2024-03-01", periods=10, freq="7min", tz="UTC")) == 0  # does not divide a day
    assert bars_per_day(hourly[:1]) == 0
    np.testing.assert_array_equal(position_in_day(hourly, 24)[:3], [5, 6, 7])
    assert position_in_day(hourly, 24)[19] == 0  # midnight UTC
    quarter = pd.to_datetime(["2024-03-01 01:45+00:00", "2024-03-01 03:15+02:00"], utc=True)  # 01:45, 01:15 UTC
    np.testing.assert_array_equal(position_in_day(quarter, 96), [7, 5])
