"""Risk controls of the trading service: each control acts, and says so in the log."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from marketsynth.trading.service import risk

DAY = pd.Timestamp("2024-01-02 10:00", tz="UTC")


def check(state, limits, current, wanted, *, price=100.0, equity=10_000.0, others=0.0, same=0.0, close_ms=0,
          clock=0.0, flatten=False):
    return risk.check_order(state, limits, market="BTCUSDT:1h", current=current, wanted=wanted, price=price,
                            equity=equity, other_symbol_notional=same, other_notional=others, bar_close_ms=close_ms,
                            clock_s=clock, flatten=flatten)


def test_notional_and_leverage_caps_cut_the_position(caplog):
    caplog.set_level(logging.WARNING)
    assert check(risk.RiskState(), risk.Limits(max_position_notional=5_000), 0, 80)[0] == pytest.approx(50)
    assert check(risk.RiskState(), risk.Limits(max_total_notional=5_000), 0, -80, others=2_000)[0] == \
        pytest.approx(-30)
    allowed, actions = check(risk.RiskState(), risk.Limits(max_leverage=2), 0, 300, equity=10_000)
    assert allowed == pytest.approx(200) and actions[0].control == "max_leverage"
    assert "max_leverage" in caplog.text
    assert check(risk.RiskState(), risk.Limits(max_position_notional=5_000), 80, 60)[0] == 60  # reducing: allowed


def test_kill_switch_halts_and_only_reductions_pass_until_resume():
    state, limits = risk.RiskState(), risk.Limits(max_drawdown=0.2)
    assert not risk.on_equity(state, limits, 10_000, DAY)
    actions = risk.on_equity(state, limits, 7_900, DAY)
    assert state.halted and actions[0].control == "max_drawdown" and "resume" in state.halt_reason
    assert check(state, limits, 10, 20)[0] == 0.0  # no new exposure while halted
    assert check(state, limits, 10, 5)[0] == 5  # reductions pass
    risk.resume(state, 7_900)
    assert not state.halted and state.high_water == 7_900
    assert check(state, limits, 10, 20)[0] == 20


def test_daily_loss_limit_flattens_until_the_next_utc_day():
    state, limits = risk.RiskState(), risk.Limits(daily_loss_limit=0.05)
    risk.on_equity(state, limits, 10_000, DAY)
    assert risk.on_equity(state, limits, 9_400, DAY)[0].control == "daily_loss_limit"
    assert check(state, limits, 10, 20)[0] == 0.0
    risk.on_equity(state, limits, 9_400, DAY + pd.Timedelta(days=1))
    assert not state.daily_stopped and check(state, limits, 0, 20)[0] == 20


def test_stop_loss_take_profit_cooldown_and_order_rate():
    limits = risk.Limits(stop_loss=0.05, take_profit=0.1, cooldown_bars=2, max_orders_per_minute=2)
    assert risk.exit_reason(limits, 1.0, 100.0, {"low": 94.0, "high": 120.0}) == "stop_loss"  # the stop wins
    assert risk.exit_reason(limits, -1.0, 100.0, {"low": 89.0, "high": 101.0}) == "take_profit"
    assert risk.exit_reason(limits, 1.0, 100.0, {"low": 96.0, "high": 101.0}) is None
    state = risk.RiskState()
    risk.start_cooldown(state, limits, "BTCUSDT:1h", 1_000, 3_600_000)
    allowed, actions = check(state, limits, 0, 5, close_ms=1_000 + 3_600_000)
    assert allowed == 0 and actions[0].control == "cooldown"
    assert check(state, limits, 0, 5, close_ms=1_000 + 2 * 3_600_000)[0] == 5
    risk.record_order(state, 0.0)
    risk.record_order(state, 10.0)
    allowed, actions = check(state, limits, 0, 5, clock=30.0, close_ms=10**12)
    assert allowed == 0 and actions[0].control == "max_order_rate"
    assert check(state, limits, 0, 5, clock=70.0, close_ms=10**12)[0] == 5
