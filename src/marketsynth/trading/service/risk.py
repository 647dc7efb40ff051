"""Risk controls of the trading service: pure functions over a small persisted state.

Checked before every order (``check_order``) and on every processed bar (``on_equity``, ``exit_reason``); each
time a control acts it is logged (logger ``marketsynth.trading.service.risk``, level WARNING) and returned as an
``Action`` so the service counts it in its metrics.

- ``max_position_notional`` (per symbol) / ``max_total_notional`` (all symbols) / ``max_leverage`` (total
  notional over equity): the wanted position is cut down to the limit.
- ``stop_loss`` / ``take_profit``: fractions of the position's entry price; a bar whose low (long) or high
  (short) reaches the level closes the position with a reduce-only order at the next open.
- ``daily_loss_limit``: equity at or below the UTC day's starting equity × (1 − limit) → flat, no new entries
  until the next UTC day.
- ``max_drawdown`` (kill switch): equity at or below the high-water mark × (1 − limit) → flatten and halt until
  ``marketsynth trade resume``.
- ``cooldown_bars``: no new entries in a market for that many bars after a stop-loss.
- ``max_orders_per_minute``: an order beyond the rate waits for the next bar.

A halted service (kill switch, or a reconciliation mismatch) only reduces positions.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field

import pandas as pd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    max_position_notional: float | None = None
    max_total_notional: float | None = None
    max_leverage: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    daily_loss_limit: float | None = None
    max_drawdown: float | None = None
    cooldown_bars: int = 0
    max_orders_per_minute: int | None = None


@dataclass
class RiskState:
    """What the controls remember (stored as JSON in ``service_state['risk']``)."""

    halted: bool = False
    halt_reason: str | None = None
    high_water: float | None = None
    day: str | None = None
    day_start_equity: float | None = None
    daily_stopped: bool = False
    cooldown_until: dict[str, int] = field(default_factory=dict)  # market -> bar close (ms) entries resume
    order_times: list[float] = field(default_factory=list)  # clock seconds of recent orders

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> RiskState:
        return cls(**(data or {}))

    @property
    def reduce_only(self) -> bool:
        return self.halted or self.daily_stopped


@dataclass(frozen=True)
class Action:
    control: str
    message: str


def _act(control: str, message: str) -> Action:
    log.warning("risk control %s: %s", control, message)
    return Action(control, message)


def halt(state: RiskState, reason: str, control: str = "max_drawdown") -> Action:
    """Halt (reduce-only until ``resume``)."""
    state.halted, state.halt_reason = True, reason
    return _act(control, f"halted, reduce-only: {reason}")


def resume(state: RiskState, equity: float | None = None) -> None:
    """Clear a halt; the high-water mark restarts from the current equity so the kill switch does not re-fire."""
    state.halted, state.halt_reason = False, None
    if equity is not None:
        state.high_water = equity


def on_equity(state: RiskState, limits: Limits, equity: float, now: pd.Timestamp) -> list[Action]:
    """Roll the UTC day, track the high-water mark, fire the daily loss limit and the drawdown kill switch."""
    actions = []
    day = f"{now:%Y-%m-%d}"
    if state.day != day:
        state.day, state.day_start_equity, state.daily_stopped = day, equity, False
    state.high_water = equity if state.high_water is None else max(state.high_water, equity)
    if (limits.max_drawdown is not None and not state.halted
            and equity <= state.high_water * (1.0 - limits.max_drawdown)):
        actions.append(halt(state, f"equity {equity:,.2f} is {1 - equity / state.high_water:.1%} below its high of "
                                   f"{state.high_water:,.2f} (max_drawdown {limits.max_drawdown:.0%}); positions "
                                   "flattened; run 'marketsynth trade resume' to trade again"))
    if (limits.daily_loss_limit is not None and not state.daily_stopped and state.day_start_equity
            and equity <= state.day_start_equity * (1.0 - limits.daily_loss_limit)):
        state.daily_stopped = True
        actions.append(_act("daily_loss_limit", f"equity {equity:,.2f} lost {1 - equity / state.day_start_equity:.1%}"
                                                f" today (limit {limits.daily_loss_limit:.0%}): flat and no new entries"
                                                " until 00:00 UTC"))
    return actions


def exit_reason(limits: Limits, units: float, entry: float, bar: dict) -> str | None:
    """``stop_loss`` or ``take_profit`` when this bar reached the position's level (the stop wins a tie)."""
    if not units or not entry:
        return None
    long = units > 0
    if limits.stop_loss is not None:
        level = entry * (1 - limits.stop_loss if long else 1 + limits.stop_loss)
        if (bar["low"] <= level) if long else (bar["high"] >= level):
            return "stop_loss"
    if limits.take_profit is not None:
        level = entry * (1 + limits.take_profit if long else 1 - limits.take_profit)
        if (bar["high"] >= level) if long else (bar["low"] <= level):
            return "take_profit"
    return None


def check_order(state: RiskState, limits: Limits, *, market: str, current: float, wanted: float, price: float,
                equity: float, other_symbol_notional: float, other_notional: float, bar_close_ms: int,
                clock_s: float, flatten: bool = False) -> tuple[float, list[Action]]:
    """The position (units) the service may go to from ``current`` when the strategy wants ``wanted``."""
    actions: list[Action] = []
    if flatten or state.reduce_only:
        allowed = 0.0 if (flatten or state.daily_stopped or state.halted) else wanted
        if state.halted and not flatten and _reduces(current, wanted):
            allowed = wanted
        if allowed != wanted:
            why = "halted" if state.halted else "daily_loss_limit"
            actions.append(_act(why, f"{market}: target {wanted:+.6g} units refused, going to {allowed:+.6g} "
                                     f"(reduce-only)"))
        wanted = allowed
    if not _reduces(current, wanted) and state.cooldown_until.get(market, 0) > bar_close_ms:
        actions.append(_act("cooldown", f"{market}: no new entry until the stop-loss cooldown ends"))
        wanted = current if (current > 0) == (wanted > 0) else 0.0
    if price > 0 and not _reduces(current, wanted):
        wanted, acted = _cap(wanted, limits.max_position_notional, other_symbol_notional, price)
        if acted:
            actions.append(_act("max_position_notional", f"{market}: position cut to {wanted:+.6g} units "
                                                         f"(max {limits.max_position_notional:,.0f} per symbol)"))
        wanted, acted = _cap(wanted, limits.max_total_notional, other_notional, price)
        if acted:
            actions.append(_act("max_total_notional", f"{market}: position cut to {wanted:+.6g} units "
                                                      f"(max {limits.max_total_notional:,.0f} in total)"))
        cap = None if limits.max_leverage is None or equity <= 0 else limits.max_leverage * equity
        wanted, acted = _cap(wanted, cap, other_notional, price)
        if acted:
            actions.append(_act("max_leverage", f"{market}: position cut to {wanted:+.6g} units "
                                                f"(max leverage {limits.max_leverage:g})"))
    if wanted != current and limits.max_orders_per_minute is not None:
        recent = [t for t in state.order_times if clock_s - t < 60.0]
        state.order_times = recent
        if len(recent) >= limits.max_orders_per_minute:
            actions.append(_act("max_order_rate", f"{market}: {len(recent)} orders in the last minute "
                                                  f"(max {limits.max_orders_per_minute}); order skipped this bar"))
            return current, actions
    return wanted, actions


def record_order(state: RiskState, clock_s: float) -> None:
    state.order_times.append(float(clock_s))


def start_cooldown(state: RiskState, limits: Limits, market: str, bar_close_ms: int, bar_ms: int) -> None:
    if limits.cooldown_bars:
        state.cooldown_until[market] = int(bar_close_ms + limits.cooldown_bars * bar_ms)


def _reduces(current: float, wanted: float) -> bool:
    """Going from ``current`` to ``wanted`` only shrinks the position (same side or flat)."""
    return wanted == 0 or (current != 0 and (current > 0) == (wanted > 0) and abs(wanted) <= abs(current))


def _cap(wanted: float, limit: float | None, others: float, price: float) -> tuple[float, bool]:
    if limit is None or not math.isfinite(wanted):
        return wanted, False
    room = max(limit - others, 0.0) / price
    if abs(wanted) <= room:
        return wanted, False
    return math.copysign(room, wanted), True
