"""Cost model: presets, funding times on bars of any length."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from marketsynth.errors import ConfigError
from marketsynth.trading.costs import Costs, funding_events


def times(start: str, periods: int, freq: str) -> np.ndarray:
    return pd.date_range(start, periods=periods, freq=freq).to_numpy("datetime64[us]")


def test_exchange_presets():
    assert (Costs().maker_fee, Costs().taker_fee) == (0.0002, 0.0005)  # Binance USDⓈ-M
    assert (Costs.bybit().maker_fee, Costs.bybit().taker_fee) == (0.0002, 0.00055)
    assert Costs.preset("binance", slippage_bps=2).slippage == pytest.approx(0.0002)
    with pytest.raises(ConfigError, match="bybit"):
        Costs.preset("kraken")


def test_constant_funding_on_hourly_bars_falls_on_00_08_16():
    bars, rates = funding_events(times("2024-01-01 05:00", 30, "h"), 0.0001)
    stamps = times("2024-01-01 05:00", 30, "h")[bars]
    assert [str(s)[11:16] for s in stamps] == ["08:00", "16:00", "00:00", "08:00"]
    assert np.allclose(rates, 0.0001)


def test_funding_times_at_or_before_the_first_bar_are_not_charged():
    bars, _ = funding_events(times("2024-01-01 00:00", 9, "h"), 0.0001)
    assert bars.tolist() == [8]  # 00:00 is the first bar's own open: nothing was held before it


def test_daily_bars_sum_the_days_funding_at_the_next_open():
    bars, rates = funding_events(times("2024-01-01", 4, "D"), 0.0001)
    # 08:00 and 16:00 of a day and the next 00:00 are charged at the next day's open, on the position held through
    assert bars.tolist() == [1, 2, 3]
    assert np.allclose(rates, 0.0003)


def test_no_funding():
    assert len(funding_events(times("2024-01-01", 30, "h"), None)[0]) == 0
    assert len(funding_events(times("2024-01-01", 30, "h"), 0.0)[0]) == 0
    with pytest.raises(ConfigError, match="funding"):
        funding_events(times("2024-01-01", 30, "h"), "0.01%")
