"""Prometheus metrics and the health check of the trading service.

``ServiceMetrics`` keeps its series in its own ``prometheus_client.CollectorRegistry`` (never the process-global
one, so two services or two tests never share counters). The service loop calls its methods; the service's HTTP
server answers ``/metrics`` with ``render()`` and ``/health`` with ``health(now)`` (HTTP 200 when healthy, 503 when
not, the detail dict as JSON).

Naming follows the Prometheus conventions: every name starts with ``marketsynth_``, counters end in ``_total``,
durations are in seconds (``_seconds``), times are Unix timestamps in seconds (``_timestamp_seconds``), fractions are
ratios (``_ratio``). Money is in **USDT, whole units** (``_usdt``): Prometheus has no base unit for money, so the unit
is the currency itself, unscaled (not cents, not thousands). USDT is the settle asset of every account the service
trades (Bybit linear and Binance USDⓈ-M perpetuals; ``ExchangeBroker.settle_asset``), equity, P&L, fees and funding
are all reported in it, and naming it makes a query's unit explicit where a generic ``_quote`` would not say what
the number is.

Labels never hold ids (order, client or exchange ids, keys). ``symbol`` must look like an exchange symbol (upper-case
letters and digits); order outcomes, risk controls and exchange error kinds come from fixed sets (``ORDER_OUTCOMES``,
``RISK_CONTROLS``, ``ERROR_KINDS``) and anything else is counted under ``other``, so a string passed by mistake (an
exchange message, a key) never becomes a label value. A metric call never raises into the trading loop: a bad value
is dropped or counted under ``other`` and logged once, without the value.

Metrics (see the README's "Deployment and monitoring" section for the dashboard that shows them):

=============================================== ========= =====================================================
name                                            type      meaning
=============================================== ========= =====================================================
marketsynth_equity_usdt                         gauge     account equity, unrealised P&L included
marketsynth_equity_high_water_usdt              gauge     highest equity seen (or the service's stored one)
marketsynth_drawdown_ratio                      gauge     1 - equity / high-water mark
marketsynth_realised_pnl_usdt                   gauge     realised P&L since the service's start of accounting
marketsynth_unrealised_pnl_usdt                 gauge     unrealised P&L of the open positions
marketsynth_position_units{symbol}              gauge     position in base units (BTC for BTCUSDT), short < 0
marketsynth_orders_total{outcome}               counter   orders by outcome: placed, filled, rejected, unknown,
                                                          retried (a resend after an uncertain send), other
marketsynth_fills_total                         counter   fills
marketsynth_fees_usdt_total                     counter   fees paid
marketsynth_fee_rebates_usdt_total              counter   fees received (a negative fee, maker rebates)
marketsynth_funding_paid_usdt_total             counter   funding paid
marketsynth_funding_received_usdt_total         counter   funding received
marketsynth_risk_actions_total{control}         counter   times a risk control acted
marketsynth_signal_latency_seconds              histogram candle close -> target computed and orders sent
marketsynth_data_lag_seconds                    gauge     clock - close of the newest stored candle
marketsynth_exchange_errors_total{kind}         counter   exchange errors by kind
marketsynth_loops_total                         counter   finished loop iterations
marketsynth_last_loop_timestamp_seconds         gauge     when the last loop iteration finished
marketsynth_candles_total                       counter   newly closed candles processed
marketsynth_last_candle_close_timestamp_seconds gauge     close time of the newest candle processed
=============================================== ========= =====================================================

Times (``now``, ``bar_close``) may be Unix seconds (int/float), ``datetime`` (naive means UTC), ``pandas.Timestamp``
or ``numpy.datetime64``.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from datetime import UTC, datetime

import httpx
import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Metric
from prometheus_client.exposition import generate_latest

from marketsynth.data.exchanges.http import UnreachableError
from marketsynth.errors import (
    ExchangeError,
    ExchangeUnreachableError,
    OrderRejected,
    OrderStateUnknown,
    TransientExchangeError,
)

log = logging.getLogger(__name__)

PREFIX = "marketsynth_"

ORDER_OUTCOMES = ("placed", "filled", "rejected", "unknown", "retried", "other")

#: The service's risk controls (issue 12); ``halted`` is an order refused or reduced because the service is halted.
RISK_CONTROLS = ("max_position_notional", "max_total_notional", "max_leverage", "stop_loss", "take_profit",
                 "daily_loss_limit", "max_drawdown", "cooldown", "max_order_rate", "halted", "reconcile_mismatch",
                 "other")

#: Other names of the same controls (the trading config's setting names, common words) -> the label value.
RISK_ALIASES = {"cooldown_bars": "cooldown", "max_orders_per_minute": "max_order_rate", "order_rate": "max_order_rate",
                "kill_switch": "max_drawdown", "drawdown": "max_drawdown", "daily_loss": "daily_loss_limit",
                "max_leverage_limit": "max_leverage", "position_notional": "max_position_notional",
                "total_notional": "max_total_notional", "halt": "halted", "reduce_only": "halted",
                "reconciliation": "reconcile_mismatch", "reconcile": "reconcile_mismatch"}

#: Exchange error kinds. ``exchange_error`` also takes the exception itself and classifies it by type only.
ERROR_KINDS = ("rate_limit", "timeout", "network", "unreachable", "server_error", "invalid_response", "auth",
               "clock_skew", "transient", "order_rejected", "order_state_unknown", "exchange", "other")

#: Signal latency buckets (seconds): REST polling aligned to candle close lands within seconds to a minute or two.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)

#: The classic Prometheus text format: every Prometheus version reads it, and our names are plain ASCII, so the
#: body is the same as in the newer 1.0.0 format prometheus_client announces by default (Prometheus 2 predates it).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_SYMBOL = re.compile(r"^[A-Z0-9]{2,30}$")


def error_kind(error: BaseException | str) -> str:
    """The ``ERROR_KINDS`` entry for an exception (by its type, never its message) or a kind name."""
    if isinstance(error, str):
        kind = _normalise(error)
        return kind if kind in ERROR_KINDS else "other"
    if isinstance(error, OrderRejected):
        return "order_rejected"
    if isinstance(error, OrderStateUnknown):
        return "order_state_unknown"
    if isinstance(error, ExchangeUnreachableError):
        return "unreachable"
    if isinstance(error, TransientExchangeError):
        if error.retry_after is not None:
            return "rate_limit"
        return "unreachable" if isinstance(error, UnreachableError) else "transient"
    if isinstance(error, ExchangeError):
        return "exchange"
    if isinstance(error, httpx.TimeoutException | TimeoutError):
        return "timeout"
    if isinstance(error, httpx.TransportError | ConnectionError):
        return "network"
    return "other"


class ServiceMetrics:
    """The trading service's metrics and health.

    Health (``health(now)``): healthy only when the last loop iteration finished at most
    ``loop_factor * loop_interval_seconds`` ago and the newest candle processed closed at most ``timeframe_seconds +
    grace_seconds`` ago. ``loop_interval_seconds`` is how often the loop runs: a service that steps once per candle
    close passes its shortest timeframe (plus its poll wait), one that polls on a timer passes the timer's period.
    ``timeframe_seconds`` is the shortest timeframe the service trades: the newest candle of any market counts.
    ``grace_seconds`` covers the wait after a close and the sync. Before the first loop and the first candle the
    service is not healthy.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, loop_interval_seconds: float = 60.0,
                 loop_factor: float = 3.0, timeframe_seconds: float = 3600.0, grace_seconds: float = 120.0):
        for name, value in (("loop_interval_seconds", loop_interval_seconds), ("loop_factor", loop_factor),
                            ("timeframe_seconds", timeframe_seconds)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"ServiceMetrics {name} must be a positive number, got {value!r}")
        if not (isinstance(grace_seconds, int | float) and math.isfinite(grace_seconds) and grace_seconds >= 0):
            raise ValueError(f"ServiceMetrics grace_seconds must be a number >= 0, got {grace_seconds!r}")
        self.registry = CollectorRegistry(auto_describe=True) if registry is None else registry
        self.loop_interval_seconds, self.loop_factor = float(loop_interval_seconds), float(loop_factor)
        self.timeframe_seconds, self.grace_seconds = float(timeframe_seconds), float(grace_seconds)
        self._lock = threading.Lock()
        self._high_water: float | None = None
        self._last_loop: float | None = None
        self._newest_close: float | None = None
        self._warned: set[str] = set()

        def gauge(name, doc, labels=()):
            return Gauge(PREFIX + name, doc, labels, registry=self.registry)

        def counter(name, doc, labels=()):  # prometheus_client adds the _total suffix to the exposed name
            return Counter(PREFIX + name, doc, labels, registry=self.registry)

        self._equity = gauge("equity_usdt", "Account equity in USDT, unrealised P&L included.")
        self._high = gauge("equity_high_water_usdt", "Highest account equity in USDT (drawdown reference).")
        self._drawdown = gauge("drawdown_ratio", "Drawdown from the equity high-water mark: 1 - equity / high water.")
        self._realised = gauge("realised_pnl_usdt", "Realised P&L in USDT.")
        self._unrealised = gauge("unrealised_pnl_usdt", "Unrealised P&L of the open positions in USDT.")
        self._position = gauge("position_units", "Position in base units (BTC for BTCUSDT); negative is short.",
                               ("symbol",))
        self._orders = counter("orders", "Orders by outcome.", ("outcome",))
        self._fills = counter("fills", "Order fills.")
        self._fees = counter("fees_usdt", "Fees paid in USDT.")
        self._rebates = counter("fee_rebates_usdt", "Fees received (negative fees, maker rebates) in USDT.")
        self._funding_paid = counter("funding_paid_usdt", "Funding paid in USDT.")
        self._funding_received = counter("funding_received_usdt", "Funding received in USDT.")
        self._risk = counter("risk_actions", "Times a risk control acted.", ("control",))
        self._latency = Histogram(PREFIX + "signal_latency_seconds",
                                  "Seconds from a candle's close to its target computed and orders sent.",
                                  buckets=LATENCY_BUCKETS, registry=self.registry)
        self._lag = gauge("data_lag_seconds", "Seconds between the clock and the close of the newest stored candle.")
        self._errors = counter("exchange_errors", "Exchange errors by kind.", ("kind",))
        self._loops = counter("loops", "Finished loop iterations.")
        self._last_loop_ts = gauge("last_loop_timestamp_seconds", "Unix time the last loop iteration finished.")
        self._candles = counter("candles", "Newly closed candles processed.")
        self._last_close_ts = gauge("last_candle_close_timestamp_seconds",
                                    "Unix close time of the newest candle processed.")
        # unknown until the service says: NaN (a gap on the dashboard), not a made-up 0
        for unknown in (self._equity, self._high, self._drawdown, self._realised, self._unrealised, self._lag,
                        self._last_loop_ts, self._last_close_ts):
            unknown.set(math.nan)
        # every labelled series exists from the start, so rate() and the dashboard see zeros, not gaps
        for outcome in ORDER_OUTCOMES:
            self._orders.labels(outcome=outcome)
        for control in RISK_CONTROLS:
            self._risk.labels(control=control)
        for kind in ERROR_KINDS:
            self._errors.labels(kind=kind)

    # -- account ----------------------------------------------------------------------------------------------
    def set_equity(self, v: float, *, high_water: float | None = None) -> None:
        """Equity in USDT. ``high_water`` is the service's stored high-water mark (it survives restarts); without
        it the highest equity this process has seen is used. Sets the drawdown ratio too."""
        equity = self._number(v, "equity")
        if equity is None:
            return
        given = None if high_water is None else self._number(high_water, "equity high water")
        with self._lock:
            # the stored mark is the reference when given; else the highest equity this process has seen
            base = given if given is not None else self._high_water
            self._high_water = equity if base is None else max(base, equity)
            high = self._high_water
        self._equity.set(equity)
        self._high.set(high)
        self._drawdown.set(max(0.0, 1.0 - equity / high) if high > 0 else 0.0)

    def set_pnl(self, realised: float, unrealised: float) -> None:
        """Realised and unrealised P&L in USDT."""
        for gauge, value, what in ((self._realised, realised, "realised P&L"),
                                   (self._unrealised, unrealised, "unrealised P&L")):
            number = self._number(value, what)
            if number is not None:
                gauge.set(number)

    def set_position(self, symbol: str, units: float) -> None:
        """The position in ``symbol`` in base units, negative for a short (0 when flat)."""
        number = self._number(units, "position")
        if number is None:
            return
        if not (isinstance(symbol, str) and _SYMBOL.match(symbol)):
            self._warn_once("symbol", "position symbol is not an exchange symbol such as BTCUSDT "
                            f"({_shape(symbol)}); the position is not exported")
            return
        self._position.labels(symbol=symbol).set(number)

    # -- orders and cash flows --------------------------------------------------------------------------------
    def order(self, outcome: str) -> None:
        """One order reached ``outcome``: placed, filled, rejected, unknown or retried."""
        self._orders.labels(outcome=self._label(outcome, ORDER_OUTCOMES, "order outcome")).inc()

    def fill(self, fee: float | None) -> None:
        """One fill and its fee in USDT (None when the exchange did not say; negative for a rebate)."""
        self._fills.inc()
        amount = None if fee is None else self._number(fee, "fee")
        if amount is None:
            return
        (self._fees if amount >= 0 else self._rebates).inc(abs(amount))

    def funding(self, amount: float) -> None:
        """A funding payment in USDT, positive when the account paid it (longs pay positive funding), negative
        when it received it -- the ledger's sign."""
        number = self._number(amount, "funding")
        if number is not None:
            (self._funding_paid if number >= 0 else self._funding_received).inc(abs(number))

    # -- risk, latency, data, errors --------------------------------------------------------------------------
    def risk_action(self, control: str) -> None:
        """A risk control acted: one of ``RISK_CONTROLS``, or its config setting's name (``RISK_ALIASES``)."""
        if isinstance(control, str):
            control = RISK_ALIASES.get(_normalise(control), control)
        self._risk.labels(control=self._label(control, RISK_CONTROLS, "risk control")).inc()

    def signal_latency(self, seconds: float) -> None:
        """Seconds from a candle's close to its target computed and its orders sent (negative -> 0)."""
        number = self._number(seconds, "signal latency")
        if number is not None:
            self._latency.observe(max(0.0, number))

    def data_lag(self, seconds: float) -> None:
        """Seconds between the clock and the close of the newest stored candle."""
        number = self._number(seconds, "data lag")
        if number is not None:
            self._lag.set(max(0.0, number))

    def exchange_error(self, kind: str | BaseException) -> None:
        """An exchange error: a kind from ``ERROR_KINDS``, or the exception (classified by its type only)."""
        string = isinstance(kind, str)
        label = self._label(kind, ERROR_KINDS, "exchange error kind") if string else error_kind(kind)
        self._errors.labels(kind=label).inc()

    # -- liveness ---------------------------------------------------------------------------------------------
    def loop_finished(self, now) -> None:
        """A loop iteration finished at ``now``."""
        t = self._time(now, "loop time")
        if t is None:
            return
        with self._lock:
            self._last_loop = t if self._last_loop is None else max(self._last_loop, t)
            last = self._last_loop
        self._loops.inc()
        self._last_loop_ts.set(last)

    def candle(self, now, bar_close) -> None:
        """A newly closed candle (closed at ``bar_close``) was processed at ``now``; sets the data lag too."""
        t, close = self._time(now, "candle time"), self._time(bar_close, "bar close")
        if t is None or close is None:
            return
        with self._lock:
            self._newest_close = close if self._newest_close is None else max(self._newest_close, close)
            newest = self._newest_close
        self._candles.inc()
        self._last_close_ts.set(newest)
        self._lag.set(max(0.0, t - newest))

    def health(self, now) -> tuple[bool, dict]:
        """``(ok, detail)``: ok when the last loop is recent and the newest candle fresh; detail is JSON-ready."""
        t = _seconds(now)
        with self._lock:
            last_loop, newest = self._last_loop, self._newest_close
        max_loop_age = self.loop_factor * self.loop_interval_seconds
        max_candle_age = self.timeframe_seconds + self.grace_seconds
        loop_age = None if last_loop is None else t - last_loop
        candle_age = None if newest is None else t - newest
        problems = []
        if loop_age is None:
            problems.append("no loop iteration has finished yet")
        elif loop_age > max_loop_age:
            problems.append(f"the last loop finished {loop_age:.0f} s ago (limit {max_loop_age:.0f} s)")
        if candle_age is None:
            problems.append("no candle has been processed yet")
        elif candle_age > max_candle_age:
            problems.append(f"the newest candle closed {candle_age:.0f} s ago (limit {max_candle_age:.0f} s)")
        ok = not problems
        return ok, {"status": "ok" if ok else "unhealthy", "problems": problems,
                    "last_loop_age_seconds": loop_age, "max_loop_age_seconds": max_loop_age,
                    "newest_candle_age_seconds": candle_age, "max_candle_age_seconds": max_candle_age}

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of every metric in the registry, and its content type.

        prometheus_client's ``*_created`` series (each counter's and histogram's creation time, exposed as extra
        gauges in this text format) are left out: they double the series count and say nothing the dashboard uses.
        """
        return generate_latest(_WithoutCreated(self.registry)), CONTENT_TYPE

    # -- helpers ----------------------------------------------------------------------------------------------
    def _label(self, value, allowed: tuple[str, ...], what: str) -> str:
        label = _normalise(value) if isinstance(value, str) else None
        if label in allowed:
            return label
        self._warn_once(what, f"{what} is not one of {', '.join(allowed[:-1])} ({_shape(value)}); counted as 'other'")
        return "other"

    def _number(self, value, what: str) -> float | None:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if math.isfinite(number):
            return number
        self._warn_once(what, f"{what} is not a finite number ({_shape(value)}); not exported")
        return None

    def _time(self, value, what: str) -> float | None:
        try:
            return _seconds(value)
        except (TypeError, ValueError):
            self._warn_once(what, f"{what} is not a time ({_shape(value)}); not exported")
            return None

    def _warn_once(self, key: str, message: str) -> None:
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        log.warning("metrics: %s", message)


class _WithoutCreated:
    """A registry view whose families have no ``_created`` samples."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry

    def collect(self):
        for family in self.registry.collect():
            if family.type in ("counter", "histogram", "summary", "gaugehistogram"):
                kept = Metric(family.name, family.documentation, family.type, family.unit)
                kept.samples = [s for s in family.samples if not s.name.endswith("_created")]
                yield kept
            else:
                yield family


def _seconds(value) -> float:
    """Unix seconds from seconds, a datetime (naive = UTC), a pandas Timestamp or a numpy datetime64."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        seconds = value.timestamp()
    elif isinstance(value, np.datetime64):
        if np.isnat(value):
            raise ValueError("NaT")
        seconds = value.astype("datetime64[ns]").astype(np.int64) / 1e9
    elif isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(f"not a time: {type(value).__name__}")
    if not math.isfinite(seconds):
        raise ValueError("not finite")
    return float(seconds)


def _normalise(text: str) -> str:
    return text.strip().lower().replace("-", "_").replace(" ", "_")


def _shape(value) -> str:
    """What a rejected value looks like, without the value itself (it may be a key or an exchange message)."""
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    return f"a {type(value).__name__}"
