"""Backtest metrics: hand-computed small cases for every metric, edge cases, and cross-checks against
empyrical-reloaded and quantstats with matched settings (periods per year, daily returns, risk-free rate)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from marketsynth.errors import ConfigError, DataError
from marketsynth.trading import performance as perf
from marketsynth.trading import verdicts


def daily(values, start="2024-01-01") -> pd.Series:
    return pd.Series(values, index=pd.date_range(start, periods=len(values), freq="D", tz="UTC"), dtype=float)


def trades_table(pnl, *, start="2024-01-01", hours=None, returns=None) -> pd.DataFrame:
    entry = pd.date_range(start, periods=len(pnl), freq="D", tz="UTC")
    hours = hours if hours is not None else [12] * len(pnl)
    table = pd.DataFrame({"entry_time": entry, "exit_time": entry + pd.to_timedelta(hours, unit="h"),
                          "pnl": np.asarray(pnl, dtype=float)})
    if returns is not None:
        table["return"] = returns
    return table


R4 = np.array([0.01, -0.02, 0.03, 0.0])  # mean 0.005; squared deviations add to 0.0013: std (ddof 1) sqrt(0.0013/3)
SD4 = math.sqrt(0.0013 / 3)


# ---------------------------------------------------------------------------------------------- resampling


def test_daily_returns_of_intraday_equity_use_the_first_value_as_the_first_days_base():
    times = pd.to_datetime(["2024-01-01 10:00", "2024-01-01 20:00", "2024-01-02 05:00", "2024-01-02 23:00",
                            "2024-01-03 01:00"], utc=True)
    equity = pd.Series([100.0, 110.0, 90.0, 99.0, 108.9], index=times)
    out = perf.daily_returns(equity)
    assert list(out.index) == list(pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"], utc=True))
    np.testing.assert_allclose(out.to_numpy(), [0.10, 99 / 110 - 1, 0.10])


def test_daily_bars_give_one_return_fewer_than_bars_and_weekends_without_bars_are_skipped():
    assert len(perf.daily_returns(daily([100, 101, 102]))) == 2
    friday_monday = pd.Series([100.0, 105.0], index=pd.to_datetime(["2024-01-05 21:00", "2024-01-08 21:00"], utc=True))
    out = perf.daily_returns(friday_monday)
    assert list(out.index) == [pd.Timestamp("2024-01-08", tz="UTC")]
    assert out.iloc[0] == pytest.approx(0.05)


def test_naive_times_are_utc_and_other_zones_are_converted():
    naive = pd.Series([100.0, 110.0], index=pd.to_datetime(["2024-01-01 23:00", "2024-01-02 01:00"]))
    tokyo = naive.tz_localize("UTC").tz_convert("Asia/Tokyo")
    assert perf.daily_returns(naive).equals(perf.daily_returns(tokyo))


def test_periods_per_year_follow_the_data_and_can_be_set():
    assert perf.periods_per_year(pd.date_range("2024-01-01", periods=200, freq="h", tz="UTC")) == 365
    assert perf.periods_per_year(pd.bdate_range("2024-01-01", periods=30, tz="UTC")) == 252
    assert perf.periods_per_year(pd.bdate_range("2024-01-01", periods=30), override=260) == 260
    with pytest.raises(ConfigError, match="periods_per_year"):
        perf.periods_per_year([], override=0)


# ---------------------------------------------------------------------------------------------- return metrics


def test_total_return_and_cagr_over_calendar_years_of_365_25_days():
    start = pd.Timestamp("2020-01-01", tz="UTC")
    equity = pd.Series([100.0, 80.0, 121.0], index=[start, start + pd.Timedelta(days=100),
                                                     start + pd.Timedelta(days=2 * 365.25)])
    assert perf.total_return(equity) == pytest.approx(0.21)
    assert perf.cagr(equity) == pytest.approx(0.10)
    assert perf.cagr(daily([100.0])) is None  # zero-length span


def test_annual_return_volatility_sharpe_and_sortino_by_hand():
    assert perf.annual_return(R4, 252) == pytest.approx(0.005 * 252)
    assert perf.annual_volatility(R4, 252) == pytest.approx(SD4 * math.sqrt(252))
    assert perf.sharpe_ratio(R4, 252) == pytest.approx(0.005 / SD4 * math.sqrt(252))
    downside = math.sqrt(0.02**2 / 4)  # only -0.02 is below the 0 target; the mean is over all 4 days
    assert perf.sortino_ratio(R4, 252) == pytest.approx(0.005 * 252 / (downside * math.sqrt(252)))


def test_risk_free_is_an_annual_rate_compounded_down_to_a_day():
    risk_free = 1.01**252 - 1  # exactly 1% a day
    assert perf.per_period_rate(risk_free, 252) == pytest.approx(0.01)
    assert perf.sharpe_ratio(R4, 252, risk_free) == pytest.approx(-0.005 / SD4 * math.sqrt(252))
    excess = R4 - 0.01  # [0, -0.03, 0.02, -0.01]
    downside = math.sqrt((0.03**2 + 0.01**2) / 4)
    assert perf.sortino_ratio(R4, 252, risk_free) == pytest.approx(-0.005 * 252 / (downside * math.sqrt(252)))
    assert excess.mean() == pytest.approx(-0.005)
    with pytest.raises(ConfigError, match="annual rate"):
        perf.per_period_rate(-1.5, 252)


def test_flat_equity_has_no_sharpe_sortino_calmar_or_psr():
    flat = daily([100.0] * 30)
    returns = perf.daily_returns(flat)
    assert perf.sharpe_ratio(returns, 365) is None
    assert perf.sortino_ratio(returns, 365) is None
    assert perf.probabilistic_sharpe_ratio(returns) is None
    assert perf.calmar_ratio(flat) is None
    assert perf.max_drawdown(flat) == 0 and perf.max_drawdown_duration(flat) == 0
    steady = daily(100 * 1.001 ** np.arange(30))  # constant growth: float noise only in the std
    assert perf.sharpe_ratio(perf.daily_returns(steady), 365) is None
    assert perf.sortino_ratio(perf.daily_returns(steady), 365) is None  # no losing day


# ---------------------------------------------------------------------------------------------- drawdowns


def test_max_drawdown_duration_and_calmar_by_hand():
    equity = daily([100, 120, 90, 110, 130, 117])
    assert perf.max_drawdown(equity) == pytest.approx(0.25)
    np.testing.assert_allclose(perf.underwater(equity).to_numpy(), [0, 0, -0.25, -1 / 12, 0, -0.1])
    assert perf.max_drawdown_duration(equity) == 3.0  # peak on day 1, back above it on day 4
    never_back = daily([100, 120, 90, 100, 110])
    assert perf.max_drawdown_duration(never_back) == 3.0  # peak day 1, still under water at the end (day 4)
    years = 5 / 365.25
    assert perf.calmar_ratio(equity) == pytest.approx((1.17 ** (1 / years) - 1) / 0.25)


def test_drawdown_is_taken_at_bar_resolution_so_an_intraday_dip_counts():
    times = pd.to_datetime(["2024-01-01 00:00", "2024-01-01 12:00", "2024-01-01 23:00", "2024-01-02 12:00"], utc=True)
    equity = pd.Series([100.0, 60.0, 100.0, 102.0], index=times)
    assert perf.max_drawdown(equity) == pytest.approx(0.40)
    assert perf.max_drawdown_duration(equity) == pytest.approx(23 / 24)
    assert perf.daily_returns(equity).min() >= 0  # the day-end samples never see the dip


def test_a_curve_that_goes_to_zero_stops_there():
    equity = daily([100, 50, -10, 20])
    assert perf.total_return(equity) == -1.0
    assert perf.cagr(equity) == -1.0
    assert perf.max_drawdown(equity) == 1.0
    assert perf.daily_returns(equity).iloc[-1] == -1.0
    assert verdicts.verdict("max_drawdown", 1.0).text.startswith("ruin")


# ---------------------------------------------------------------------------------------------- trades


def test_trade_metrics_by_hand():
    table = trades_table([10, -5, 20, 0, -15], hours=[6, 12, 24, 48, 30], returns=[0.01, -0.005, 0.02, 0.0, -0.015])
    assert perf.n_trades(table) == 5
    assert perf.win_rate(table) == pytest.approx(2 / 5)  # the break-even trade is not a win
    assert perf.profit_factor(table) == pytest.approx(30 / 20)
    assert perf.expectancy(table) == pytest.approx(2.0)
    assert perf.avg_trade_return(table) == pytest.approx(0.002)
    sd = math.sqrt((8**2 + 7**2 + 18**2 + 2**2 + 17**2) / 4)  # deviations from the mean P&L of 2
    assert perf.sqn(table) == pytest.approx(math.sqrt(5) * 2 / sd)
    assert perf.avg_trade_duration(table) == pytest.approx((6 + 12 + 24 + 48 + 30) / 5 / 24)


def test_no_trades_all_winners_and_all_losers():
    for empty in (None, trades_table([])):
        assert perf.n_trades(empty) == 0
        assert perf.win_rate(empty) is None and perf.profit_factor(empty) is None
        assert perf.expectancy(empty) is None and perf.sqn(empty) is None
        assert perf.avg_trade_duration(empty) is None and perf.avg_trade_return(empty) is None
    winners = trades_table([5, 10])
    assert perf.profit_factor(winners) is None and perf.win_rate(winners) == 1.0
    assert verdicts.verdict("profit_factor", None, {"n_trades": 2}).tone == "check"
    assert verdicts.verdict("profit_factor", None, {"n_trades": 0}).text == "no trades"
    assert perf.profit_factor(trades_table([-5, -10])) == 0.0
    assert perf.sqn(trades_table([3, 3, 3])) is None


def test_open_trades_run_to_the_end():
    table = trades_table([10.0])
    table.loc[0, "exit_time"] = pd.NaT
    end = pd.Timestamp("2024-01-03", tz="UTC")
    assert perf.avg_trade_duration(table, end=end) == pytest.approx(2.0)
    assert perf.avg_trade_duration(table) is None


def test_exposure_from_a_series_or_from_the_trades():
    times = pd.date_range("2024-01-01", periods=10, freq="h", tz="UTC")
    assert perf.exposure_time(times, exposure=[0, 1, 1, 0, -0.5]) == pytest.approx(0.6)
    overlapping = pd.DataFrame({"entry_time": [times[2], times[3], times[8]], "exit_time": [times[5], times[4], pd.NaT],
                                "pnl": [1.0, 1.0, 1.0]})
    assert perf.exposure_time(times, trades=overlapping) == pytest.approx(0.5)  # bars 2, 3, 4 and 8, 9 (open)
    assert perf.exposure_time(times) == 0.0


def test_bad_inputs_are_data_errors_that_say_what_to_do():
    with pytest.raises(DataError, match="empty"):
        perf.as_equity(pd.Series([], index=pd.DatetimeIndex([], tz="UTC"), dtype=float))
    with pytest.raises(DataError, match="NaN"):
        perf.as_equity(daily([100, np.nan]))
    with pytest.raises(DataError, match="DatetimeIndex"):
        perf.as_equity(pd.Series([1.0, 2.0]))
    with pytest.raises(DataError, match="positive capital"):
        perf.as_equity(daily([0, 1]))
    with pytest.raises(DataError, match="duplicate"):
        perf.as_equity(pd.Series([1.0, 2.0], index=pd.DatetimeIndex(["2024-01-01", "2024-01-01"], tz="UTC")))
    with pytest.raises(DataError, match="exit_time"):
        perf.win_rate(pd.DataFrame({"entry_time": [], "pnl": []}))
    with pytest.raises(DataError, match="pnl"):
        perf.win_rate(trades_table([np.nan]))


# ---------------------------------------------------------------------------------------------- tail and significance


def test_historical_var_and_cvar_are_positive_loss_fractions():
    returns = np.array([-0.05, -0.04] + [0.01] * 18)  # 20 days: the 95% VaR is the 2nd worst loss
    assert perf.value_at_risk(returns) == pytest.approx(0.04)
    assert perf.conditional_value_at_risk(returns) == pytest.approx(0.05)  # the worst 20 * 5% = 1 day
    assert perf.value_at_risk([]) is None and perf.conditional_value_at_risk([]) is None


def test_probabilistic_sharpe_ratio_by_hand():
    returns = np.array([0.02, -0.01, 0.03, 0.01, -0.02, 0.015, 0.005, -0.005])
    n, mean, sd = len(returns), returns.mean(), returns.std(ddof=1)
    m2, m3, m4 = (((returns - mean) ** k).mean() for k in (2, 3, 4))
    g1 = m3 / m2**1.5
    skew = g1 * math.sqrt(n * (n - 1)) / (n - 2)  # adjusted Fisher-Pearson (bias-corrected) skewness
    excess = (n - 1) / ((n - 2) * (n - 3)) * ((n + 1) * (m4 / m2**2 - 3) + 6)  # bias-corrected excess kurtosis
    assert perf.return_moments(returns) == pytest.approx((skew, excess + 3))
    sr = mean / sd
    z = sr * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (excess + 2) / 4 * sr**2)
    expected = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    assert perf.probabilistic_sharpe_ratio(returns) == pytest.approx(expected)
    assert perf.probabilistic_sharpe_ratio(returns, sr_benchmark=sr) == pytest.approx(0.5)
    assert perf.probabilistic_sharpe_ratio(returns[:3]) is None  # too few days for the moments


def test_deflated_sharpe_ratio_reproduces_the_papers_example():
    # Bailey & Lopez de Prado (2014), section 5: 100 trials, annual SR 2.5 and trial variance 0.5, 1250 days.
    dsr = perf.deflated_sharpe_ratio(2.5 / math.sqrt(250), 100, 0.5 / 250, 1250, -3, 10)
    assert dsr == pytest.approx(0.9004, abs=1e-4)
    psr = perf._psr(2.5 / math.sqrt(250), 0.0, 1250, -3, 10)
    assert perf.deflated_sharpe_ratio(2.5 / math.sqrt(250), 1, 0.5 / 250, 1250, -3, 10) == pytest.approx(psr)
    assert perf.deflated_sharpe_ratio(0.1, 1000, 0.01, 500, 0, 3) < perf.deflated_sharpe_ratio(0.1, 10, 0.01, 500, 0, 3)
    with pytest.raises(ConfigError, match="n_trials"):
        perf.deflated_sharpe_ratio(0.1, 0, 0.01, 500, 0, 3)


# ---------------------------------------------------------------------------------------------- plots' series


def test_monthly_returns_compound_the_days_and_rolling_sharpe_waits_for_a_full_window():
    returns = pd.Series([0.1, 0.1, -0.5], index=pd.to_datetime(["2024-01-30", "2024-01-31", "2024-02-01"], utc=True))
    table = perf.monthly_returns(returns)
    assert table.loc[2024, 1] == pytest.approx(0.21) and table.loc[2024, 2] == pytest.approx(-0.5)
    assert np.isnan(table.loc[2024, 3])
    assert table.loc[2024, "year"] == pytest.approx(1.21 * 0.5 - 1)
    rolling = perf.rolling_sharpe(daily(R4.tolist() * 3), window=4, periods_per_year=252)
    assert rolling.iloc[:3].isna().all()
    assert rolling.iloc[3] == pytest.approx(0.005 / SD4 * math.sqrt(252))


# ---------------------------------------------------------------------------------------------- summary


KEYS = {"start", "end", "bars", "periods_per_year", "total_return", "cagr", "annual_return", "annual_volatility",
        "sharpe", "sortino", "calmar", "max_drawdown", "max_drawdown_duration", "win_rate", "profit_factor",
        "expectancy", "sqn", "exposure", "n_trades", "avg_trade_duration", "var_95", "cvar_95", "psr"}


def _hourly_backtest(seed=0, days=60):
    times = pd.date_range("2024-01-01", periods=24 * days, freq="h", tz="UTC")
    rng = np.random.default_rng(seed)
    equity = 1000 * np.exp(np.cumsum(rng.normal(0.0002, 0.005, len(times))))
    exposure = (np.arange(len(times)) // 24 % 2).astype(float)  # in the market every other day
    frame = pd.DataFrame({"time": times, "equity": equity, "exposure": exposure, "price": equity})
    entries, exits = times[24::48][:-1], times[48::48]  # a day in the market, a day out
    trades = pd.DataFrame({"entry_time": entries, "exit_time": exits, "pnl": rng.normal(1, 5, len(exits))})
    return frame, trades


def test_summary_has_every_key_is_json_safe_and_accepts_a_result_object():
    frame, trades = _hourly_backtest()
    stats = perf.summary(SimpleNamespace(equity=frame, trades=trades))
    assert set(stats) >= KEYS
    json.dumps(stats, allow_nan=False)
    assert stats["periods_per_year"] == 365 and stats["bars"] == len(frame) and stats["days"] == 60
    assert stats["exposure"] == pytest.approx(0.5)  # from the frame's exposure column
    assert stats["n_trades"] == len(trades) and stats["avg_trade_duration"] == pytest.approx(1.0)
    direct = perf.summary(frame.set_index("time")["equity"], trades, exposure=frame["exposure"])
    assert direct == stats
    assert perf.summary(frame.set_index("time")["equity"], trades, periods_per_year=252)["periods_per_year"] == 252


def test_summary_of_a_flat_curve_without_trades_is_json_safe():
    stats = perf.summary(daily([1000.0] * 10), None)
    json.dumps(stats, allow_nan=False)
    assert stats["sharpe"] is None and stats["sortino"] is None and stats["psr"] is None
    assert stats["n_trades"] == 0 and stats["win_rate"] is None and stats["profit_factor"] is None
    assert stats["exposure"] == 0 and stats["total_return"] == 0 and stats["max_drawdown"] == 0
    found = verdicts.verdicts(stats)
    assert found["sharpe"].text.startswith("undefined") and found["win_rate"].text == "no trades"


def test_summary_of_one_bar_does_not_fail():
    stats = perf.summary(daily([1000.0]), None)
    json.dumps(stats, allow_nan=False)
    assert stats["days"] == 0 and stats["cagr"] is None and stats["var_95"] is None


def test_verdicts_in_plain_language():
    assert verdicts.verdict("sharpe", -0.3).text == "loses money after risk"
    assert verdicts.verdict("sharpe", 0.5).text == "weak"
    assert verdicts.verdict("sharpe", 1.5).tone == "good"
    assert "look-ahead" in verdicts.verdict("sharpe", 2.5).text
    assert "unreliable" in verdicts.verdict("sharpe", 1.5, {"days": 30}).text
    assert verdicts.verdict("psr", 0.9).text.startswith("not significant")
    assert verdicts.verdict("psr", 0.97).text == "significant at 95%"
    assert verdicts.verdict("max_drawdown", 0.05).text == "shallow; needs +5.3% to recover"
    assert verdicts.verdict("max_drawdown", 0.5).tone == "poor"
    assert verdicts.verdict("max_drawdown", 0.0).text == "no drawdown: equity never fell"
    assert verdicts.verdict("n_trades", 12).text == "too few trades for reliable statistics"
    assert verdicts.verdict("var_95", 0.031).text == "1 day in 20 loses more than 3.1%"


# ---------------------------------------------------------------------------------------------- cross-checks


def _random_daily_equity(n_days: int, seed: int = 1) -> pd.Series:
    rng = np.random.default_rng(seed)
    returns = rng.standard_t(4, n_days) * 0.02 + 0.001
    return daily(1000 * np.cumprod(np.r_[1.0, 1 + returns]))


def test_cross_check_against_empyrical():
    ep = pytest.importorskip("empyrical")
    equity = _random_daily_equity(400)
    returns = perf.daily_returns(equity)  # 400 returns over 400 calendar days
    ppy = 365
    assert perf.sharpe_ratio(returns, ppy) == pytest.approx(ep.sharpe_ratio(returns, annualization=ppy))
    rf_d = perf.per_period_rate(0.04, ppy)
    assert perf.sharpe_ratio(returns, ppy, 0.04) == pytest.approx(
        ep.sharpe_ratio(returns, risk_free=rf_d, annualization=ppy))
    assert perf.sortino_ratio(returns, ppy) == pytest.approx(ep.sortino_ratio(returns, annualization=ppy))
    assert perf.annual_volatility(returns, ppy) == pytest.approx(ep.annual_volatility(returns, annualization=ppy))
    assert perf.max_drawdown(equity) == pytest.approx(-ep.max_drawdown(returns))
    # empyrical's CAGR counts years as returns / annualization: one return per calendar day and 365.25 match ours
    assert perf.cagr(equity) == pytest.approx(ep.cagr(returns, annualization=365.25))
    assert perf.calmar_ratio(equity) == pytest.approx(ep.calmar_ratio(returns, annualization=365.25))
    assert perf.total_return(equity) == pytest.approx(ep.cum_returns_final(returns))
    # empyrical interpolates its VaR quantile and takes floor((n-1) 5%) + 1 days for CVaR; at n = 101 (VaR) and
    # n = 100 (CVaR) both land exactly on our inverted-CDF VaR and Acerbi-Tasche CVaR
    assert perf.value_at_risk(returns[:101]) == pytest.approx(-ep.value_at_risk(returns[:101], cutoff=0.05))
    assert perf.conditional_value_at_risk(returns[:100]) == pytest.approx(
        -ep.conditional_value_at_risk(returns[:100], cutoff=0.05))


def test_cross_check_against_quantstats():
    qs = pytest.importorskip("quantstats")
    equity = _random_daily_equity(500, seed=2)
    returns = perf.daily_returns(equity)
    ppy = 365
    assert perf.sharpe_ratio(returns, ppy) == pytest.approx(qs.stats.sharpe(returns, periods=ppy))
    assert perf.sharpe_ratio(returns, ppy, 0.04) == pytest.approx(qs.stats.sharpe(returns, rf=0.04, periods=ppy))
    assert perf.sortino_ratio(returns, ppy) == pytest.approx(qs.stats.sortino(returns, periods=ppy))
    assert perf.annual_volatility(returns, ppy) == pytest.approx(qs.stats.volatility(returns, periods=ppy))
    assert perf.max_drawdown(equity) == pytest.approx(-qs.stats.max_drawdown(returns))
    assert perf.probabilistic_sharpe_ratio(returns) == pytest.approx(qs.stats.probabilistic_sharpe_ratio(returns))
    # trade statistics: quantstats works on return series, so feed it the trades' returns (no zero trade)
    trade_returns = pd.Series(np.random.default_rng(3).normal(0.002, 0.02, 80),
                              index=pd.date_range("2024-01-01", periods=80, freq="D", tz="UTC"))
    table = trades_table((trade_returns * 1000).to_numpy())
    assert perf.win_rate(table) == pytest.approx(qs.stats.win_rate(trade_returns))
    assert perf.profit_factor(table) == pytest.approx(qs.stats.profit_factor(trade_returns))
