"""The trading service's Prometheus metrics and health check (trading/service/monitoring.py)."""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from marketsynth.data.exchanges.http import UnreachableError
from marketsynth.errors import (
    ExchangeError,
    ExchangeUnreachableError,
    OrderRejected,
    OrderStateUnknown,
    TransientExchangeError,
)
from marketsynth.trading.service.monitoring import (
    ERROR_KINDS,
    ORDER_OUTCOMES,
    RISK_CONTROLS,
    ServiceMetrics,
    error_kind,
)

SECRET = "Zx9SECRETkeyQ1w2e3r4t5y6u7i8o9p0AbCdEf"  # looks like an API secret


def samples(metrics: ServiceMetrics) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} parsed from the exposition text, as Prometheus would read it."""
    body, _ = metrics.render()
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics, name, **labels):
    return samples(metrics)[(name, tuple(sorted(labels.items())))]


def test_own_registry_not_the_global_one():
    a, b = ServiceMetrics(), ServiceMetrics()
    a.order("placed")
    assert value(a, "marketsynth_orders_total", outcome="placed") == 1
    assert value(b, "marketsynth_orders_total", outcome="placed") == 0
    assert REGISTRY.get_sample_value("marketsynth_orders_total", {"outcome": "placed"}) is None
    shared = CollectorRegistry()
    assert ServiceMetrics(shared).registry is shared


def test_account_gauges_equity_drawdown_pnl_positions():
    m = ServiceMetrics()
    assert math.isnan(value(m, "marketsynth_equity_usdt"))  # unknown until set, not 0
    m.set_equity(1000.0)
    m.set_equity(1200.0)
    m.set_equity(900.0)
    assert value(m, "marketsynth_equity_usdt") == 900.0
    assert value(m, "marketsynth_equity_high_water_usdt") == 1200.0
    assert value(m, "marketsynth_drawdown_ratio") == pytest.approx(0.25)
    m.set_equity(950.0, high_water=2000.0)  # the service's stored mark (survives restarts) wins
    assert value(m, "marketsynth_equity_high_water_usdt") == 2000.0
    assert value(m, "marketsynth_drawdown_ratio") == pytest.approx(0.525)
    m.set_pnl(12.5, -3.25)
    assert value(m, "marketsynth_realised_pnl_usdt") == 12.5
    assert value(m, "marketsynth_unrealised_pnl_usdt") == -3.25
    m.set_position("BTCUSDT", 0.015)
    m.set_position("ETHUSDT", -2.0)
    m.set_position("BTCUSDT", 0.0)
    assert value(m, "marketsynth_position_units", symbol="BTCUSDT") == 0.0
    assert value(m, "marketsynth_position_units", symbol="ETHUSDT") == -2.0


def test_orders_fills_fees_funding():
    m = ServiceMetrics()
    for outcome in ("placed", "placed", "filled", "rejected", "unknown", "retried"):
        m.order(outcome)
    assert {o: value(m, "marketsynth_orders_total", outcome=o) for o in ORDER_OUTCOMES} == {
        "placed": 2, "filled": 1, "rejected": 1, "unknown": 1, "retried": 1, "other": 0}
    m.fill(0.6)
    m.fill(None)  # fee not known yet: the fill still counts
    m.fill(-0.1)  # a maker rebate: counters never go down, it has its own
    assert value(m, "marketsynth_fills_total") == 3
    assert value(m, "marketsynth_fees_usdt_total") == pytest.approx(0.6)
    assert value(m, "marketsynth_fee_rebates_usdt_total") == pytest.approx(0.1)
    m.funding(1.5)  # the ledger's sign: positive = the account paid
    m.funding(-0.5)
    m.funding(2.0)
    assert value(m, "marketsynth_funding_paid_usdt_total") == pytest.approx(3.5)
    assert value(m, "marketsynth_funding_received_usdt_total") == pytest.approx(0.5)


def test_risk_latency_lag_errors():
    m = ServiceMetrics()
    m.risk_action("stop_loss")
    m.risk_action("Daily-Loss-Limit")  # case and dashes normalised
    m.risk_action("max_drawdown")
    m.risk_action("cooldown_bars")  # the trading config's setting names map to the controls
    m.risk_action("max_orders_per_minute")
    assert value(m, "marketsynth_risk_actions_total", control="stop_loss") == 1
    assert value(m, "marketsynth_risk_actions_total", control="daily_loss_limit") == 1
    assert value(m, "marketsynth_risk_actions_total", control="max_drawdown") == 1
    assert value(m, "marketsynth_risk_actions_total", control="cooldown") == 1
    assert value(m, "marketsynth_risk_actions_total", control="max_order_rate") == 1
    assert sum(value(m, "marketsynth_risk_actions_total", control=c) for c in RISK_CONTROLS) == 5
    for seconds in (0.3, 4.0, 45.0, -1.0):  # a negative latency (clock skew) counts as 0
        m.signal_latency(seconds)
    assert value(m, "marketsynth_signal_latency_seconds_count") == 4
    assert value(m, "marketsynth_signal_latency_seconds_sum") == pytest.approx(49.3)
    assert value(m, "marketsynth_signal_latency_seconds_bucket", le="0.5") == 2
    assert value(m, "marketsynth_signal_latency_seconds_bucket", le="5.0") == 3
    assert value(m, "marketsynth_signal_latency_seconds_bucket", le="+Inf") == 4
    m.data_lag(12.0)
    assert value(m, "marketsynth_data_lag_seconds") == 12.0
    m.exchange_error("rate_limit")
    m.exchange_error(TransientExchangeError("Bybit HTTP 429 rate limited", retry_after=2.0))
    m.exchange_error(OrderRejected("insufficient margin", code=110007))
    assert value(m, "marketsynth_exchange_errors_total", kind="rate_limit") == 2
    assert value(m, "marketsynth_exchange_errors_total", kind="order_rejected") == 1


@pytest.mark.parametrize(("error", "kind"), [
    (TransientExchangeError("HTTP 429", retry_after=1.0), "rate_limit"),
    (TransientExchangeError("HTTP 502"), "transient"),
    (UnreachableError("cannot reach bybit"), "unreachable"),
    (ExchangeUnreachableError("cannot reach", "check the network"), "unreachable"),
    (OrderRejected("reduce-only", code=-2022), "order_rejected"),
    (OrderStateUnknown("lookup failed", client_id="ms-abc-123"), "order_state_unknown"),
    (ExchangeError("unknown symbol"), "exchange"),
    (TimeoutError(), "timeout"),
    (ConnectionResetError(), "network"),
    (RuntimeError(SECRET), "other"),
])
def test_error_kind_by_type_never_by_message(error, kind):
    assert error_kind(error) == kind
    m = ServiceMetrics()
    m.exchange_error(error)
    assert value(m, "marketsynth_exchange_errors_total", kind=kind) == 1


def test_loop_and_candle_series():
    m = ServiceMetrics()
    m.loop_finished(1_700_000_000)
    m.loop_finished(1_700_000_060)
    m.candle(1_700_000_065, 1_700_000_000)
    m.candle(1_700_000_066, 1_699_999_100)  # an older market's candle does not move the newest close back
    assert value(m, "marketsynth_loops_total") == 2
    assert value(m, "marketsynth_last_loop_timestamp_seconds") == 1_700_000_060
    assert value(m, "marketsynth_candles_total") == 2
    assert value(m, "marketsynth_last_candle_close_timestamp_seconds") == 1_700_000_000
    assert value(m, "marketsynth_data_lag_seconds") == 66


def test_render_parses_and_follows_the_naming_conventions():
    m = ServiceMetrics()
    m.set_position("BTCUSDT", 1.0)  # so the labelled gauge has a series too
    body, content_type = m.render()
    assert content_type.startswith("text/plain") and "version=0.0.4" in content_type
    families = list(text_string_to_metric_families(body.decode()))
    assert len(families) >= 20
    duration_words = ("latency", "lag", "duration", "age", "delay", "elapsed")
    for family in families:
        assert family.name.startswith("marketsynth_"), family.name
        assert family.documentation, family.name
        assert family.samples, family.name
        for s in family.samples:
            assert s.name.startswith("marketsynth_")
            assert not s.name.endswith("_created"), s.name
            if family.type == "counter":
                assert s.name.endswith("_total"), s.name
            else:
                assert not s.name.endswith("_total"), s.name
            if any(word in family.name for word in duration_words) or "timestamp" in family.name:
                assert family.name.endswith("_seconds"), family.name
            for label in s.labels:
                assert "id" not in label.lower().split("_"), label
                assert not label.lower().endswith("id"), label
            assert set(s.labels) <= {"symbol", "outcome", "control", "kind", "le"}, s.labels
        if family.type == "histogram":
            assert family.name.endswith("_seconds")
    names = {f.name for f in families}
    for name in ("marketsynth_equity_usdt", "marketsynth_orders", "marketsynth_fees_usdt",
                 "marketsynth_signal_latency_seconds", "marketsynth_data_lag_seconds", "marketsynth_exchange_errors",
                 "marketsynth_risk_actions", "marketsynth_position_units"):
        assert name in names  # the parser drops a counter's _total from the family name
    # every closed set is exported from the start, so rate() sees zeros, not missing series
    parsed = samples(m)
    for label, allowed, name in (("outcome", ORDER_OUTCOMES, "marketsynth_orders_total"),
                                 ("control", RISK_CONTROLS, "marketsynth_risk_actions_total"),
                                 ("kind", ERROR_KINDS, "marketsynth_exchange_errors_total")):
        assert {dict(k[1])[label] for k in parsed if k[0] == name} == set(allowed)


def test_a_secret_never_becomes_a_label_value_or_a_log_line(caplog):
    m = ServiceMetrics()
    with caplog.at_level(logging.WARNING):
        m.exchange_error(SECRET)
        m.exchange_error(RuntimeError(f"signature {SECRET} invalid"))
        m.exchange_error(ExchangeError(f"Bybit refused key {SECRET}"))
        m.risk_action(SECRET)
        m.order(SECRET)
        m.set_position(SECRET, 1.0)
        m.set_position(SECRET.upper(), 1.0)  # an upper-case secret longer than any symbol
        m.set_position("BTCUSDT", SECRET)
        m.set_equity(SECRET)
        m.fill(SECRET)
        m.loop_finished(SECRET)
    body, _ = m.render()
    assert SECRET not in body.decode() and SECRET.upper() not in body.decode()
    assert SECRET not in caplog.text and SECRET.upper() not in caplog.text
    assert "counted as 'other'" in caplog.text
    assert value(m, "marketsynth_exchange_errors_total", kind="other") == 2
    assert value(m, "marketsynth_exchange_errors_total", kind="exchange") == 1
    assert value(m, "marketsynth_risk_actions_total", control="other") == 1
    assert value(m, "marketsynth_orders_total", outcome="other") == 1
    assert not any(k[0] == "marketsynth_position_units" for k in samples(m))
    assert math.isnan(value(m, "marketsynth_equity_usdt"))


def test_bad_numbers_are_dropped_without_raising():
    m = ServiceMetrics()
    m.fill(math.nan)  # counts the fill, never poisons the fee counter
    m.funding(math.inf)
    m.signal_latency(None)
    m.set_pnl(math.nan, 4.0)
    assert value(m, "marketsynth_fills_total") == 1
    assert value(m, "marketsynth_fees_usdt_total") == 0
    assert value(m, "marketsynth_funding_paid_usdt_total") == 0
    assert value(m, "marketsynth_signal_latency_seconds_count") == 0
    assert value(m, "marketsynth_unrealised_pnl_usdt") == 4.0


T0 = datetime(2024, 5, 1, 12, 0, 5, tzinfo=UTC)


def fresh(loop=30.0, factor=3.0, timeframe=900.0, grace=60.0):
    m = ServiceMetrics(loop_interval_seconds=loop, loop_factor=factor, timeframe_seconds=timeframe, grace_seconds=grace)
    m.candle(T0, T0 - timedelta(seconds=5))  # the 12:00 close, seen 5 s later
    m.loop_finished(T0)
    return m


def test_health_before_anything_ran_is_false():
    ok, detail = ServiceMetrics().health(T0)
    assert not ok and detail["status"] == "unhealthy"
    assert detail["last_loop_age_seconds"] is None and len(detail["problems"]) == 2
    json.dumps(detail)  # served as JSON


def test_health_true_when_loop_recent_and_data_fresh():
    m = fresh()
    ok, detail = m.health(T0 + timedelta(seconds=89))
    assert ok, detail
    assert detail == {"status": "ok", "problems": [], "last_loop_age_seconds": 89.0, "max_loop_age_seconds": 90.0,
                      "newest_candle_age_seconds": 94.0, "max_candle_age_seconds": 960.0}
    json.dumps(detail)


def test_health_false_when_the_loop_stalls():
    m = fresh()
    ok, detail = m.health(T0 + timedelta(seconds=91))  # 3 loop intervals of 30 s: the limit is 90 s
    assert not ok
    assert detail["problems"] == ["the last loop finished 91 s ago (limit 90 s)"]


def test_health_false_when_the_data_is_stale_though_the_loop_runs():
    m = fresh()
    later = T0 + timedelta(seconds=956)  # the newest close is now 961 s old: a 900 s timeframe + 60 s grace
    m.loop_finished(later)
    ok, detail = m.health(later)
    assert not ok
    assert detail["problems"] == ["the newest candle closed 961 s ago (limit 960 s)"]
    m.candle(later, T0 + timedelta(seconds=895))  # the 12:15 candle arrives
    assert m.health(later)[0]


@pytest.mark.parametrize("kind", ["float", "datetime", "naive", "timestamp", "datetime64"])
def test_health_takes_any_time_type(kind):
    m = fresh()
    at = T0 + timedelta(seconds=10)
    given = {"float": at.timestamp(), "datetime": at, "naive": at.replace(tzinfo=None),
             "timestamp": pd.Timestamp(at), "datetime64": np.datetime64(pd.Timestamp(at).tz_localize(None))}[kind]
    ok, detail = m.health(given)
    assert ok and detail["last_loop_age_seconds"] == pytest.approx(10.0)


def test_health_settings_are_checked():
    with pytest.raises(ValueError, match="loop_interval_seconds"):
        ServiceMetrics(loop_interval_seconds=0)
    with pytest.raises(ValueError, match="grace_seconds"):
        ServiceMetrics(grace_seconds=-1)
