import numpy as np
import pandas as pd
import pytest

from marketsynth.data.bars import as_bars
from marketsynth.data.resample import resample_bars
from marketsynth.errors import ConfigError


def hourly(n=48, start="2021-01-01"):
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * 1.01
    low = np.minimum(open_, close) * 0.99
    times = pd.date_range(start, periods=n, freq="1h", tz="UTC")
    return as_bars(pd.DataFrame({"time": times, "open": open_, "high": high, "low": low, "close": close,
                                 "volume": rng.uniform(1, 10, n)}))


def test_aggregation_is_first_max_min_last_sum():
    bars = hourly()
    four = resample_bars(bars, "1h", "4h")
    assert len(four) == 12
    first = bars.iloc[:4]
    row = four.iloc[0]
    assert row.open == first.open.iloc[0] and row.close == first.close.iloc[-1]
    assert row.high == first.high.max() and row.low == first.low.min()
    assert row.volume == pytest.approx(first.volume.sum())


def test_chained_resampling_equals_direct():
    bars = hourly(96)
    via = resample_bars(resample_bars(resample_bars(bars, "1h", "4h"), "4h", "12h"), "12h", "1d")
    direct = resample_bars(bars, "1h", "1d")
    pd.testing.assert_frame_equal(via, direct, check_exact=False)


def test_incomplete_buckets_are_dropped():
    bars = hourly(48).drop(index=[5]).reset_index(drop=True)  # a gap inside the second 4h bucket
    four = resample_bars(bars, "1h", "4h")
    assert pd.Timestamp("2021-01-01 04:00", tz="UTC") not in set(four.time)
    assert len(four) == 11
    partial = resample_bars(hourly(30), "1h", "1d")  # 30 hours: only the first day is complete
    assert len(partial) == 1


def test_fifteen_minutes_to_hour_and_week_alignment():
    times = pd.date_range("2021-01-04", periods=4 * 24 * 7, freq="15min", tz="UTC")
    bars = as_bars(pd.DataFrame({"time": times, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 1.0}))
    assert len(resample_bars(bars, "15m", "1h")) == 24 * 7
    week = resample_bars(bars, "15m", "1w")
    assert len(week) == 1 and week.time.iloc[0].weekday() == 0 and week.volume.iloc[0] == 4 * 24 * 7


def test_target_must_be_a_multiple():
    with pytest.raises(ConfigError, match="whole multiple"):
        resample_bars(hourly(), "1h", "15m")
    with pytest.raises(ConfigError, match="whole multiple"):
        resample_bars(hourly(), "4h", "6h")
