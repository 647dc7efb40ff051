"""The trading loop: one iteration per newly closed candle per market.

For each market (symbol × interval × strategy), in time order of candle closes: sync the candles from the
exchange (``data.sync.sync_series``; none in a replay of stored candles), call ``Strategy.on_bar`` with the
history up to the closed bar, turn a changed target into an order for the difference to the target position,
check the risk controls, store the prediction and its pending order in ONE transaction, send it
(``Broker.place``, idempotent by client order id), store the outcome (order status, fill, the market's position,
all in one transaction), then mark the bar done. A process killed anywhere in between repeats the step on restart:
the prediction and order are already stored (storing them again changes nothing), the start-up reconciliation
(``reconcile.reconcile``) has looked every open order up by its client id, and an order is only (re)sent while
it is pending — never twice under different ids.

Each market trades its own book: ``capital × capital_share`` (an equal split by default). Paper mode sizes at the
fill like the backtester (``brokers.paper``); live mode converts the target to units at the decision bar's close
(fraction × book equity × leverage / close) and keeps the book from the exchange's fills (fees included;
exchange funding is not in the book).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass, field

import pandas as pd

from marketsynth.data.store import Store
from marketsynth.data.sync import sync_series
from marketsynth.errors import (
    ExchangeError,
    MarketSynthError,
    OrderRejected,
    OrderStateUnknown,
    TransientExchangeError,
)
from marketsynth.timeframes import Timeframe, parse_timeframe, to_ms
from marketsynth.trading.brokers.base import Broker, OrderState, client_order_id
from marketsynth.trading.brokers.paper import PaperBroker, TargetOrder
from marketsynth.trading.service import risk
from marketsynth.trading.strategy import History, Strategy

log = logging.getLogger(__name__)
CRASH_ENV = "MARKETSYNTH_CRASH_AT"


class CrashPoints:
    """Test hook: ``MARKETSYNTH_CRASH_AT=after_pending:17`` ends the process (``os._exit(137)``, as a kill -9
    would) the 17th time it reaches "after_pending". Points: ``after_pending`` (stored, not sent), ``after_send``
    (sent, outcome not stored), ``after_fill`` (stored, bar not marked done)."""

    def __init__(self, spec: str | None = None):
        spec = os.environ.get(CRASH_ENV, "") if spec is None else spec
        self.point, _, count = spec.partition(":")
        self.left = int(count or 1) if self.point else 0
        self.seen: dict[str, int] = {}

    def hit(self, point: str) -> None:
        self.seen[point] = self.seen.get(point, 0) + 1
        if point == self.point:
            self.left -= 1
            if self.left <= 0:
                os._exit(137)


UNKNOWN_LOOKUPS = 3  # lookups of an unconfirmed order that find nothing before the service halts

@dataclass
class Market:
    key: str  # "BTCUSDT:1h"
    symbol: str
    tf: Timeframe
    strategy: Strategy
    capital: float
    bars: pd.DataFrame | None = None
    first: pd.Timestamp | None = None
    all_bars: pd.DataFrame | None = None
    done_ms: int = 0  # close time (ms) of the last bar fully processed
    fed: int = 0  # bars passed to on_bar so far
    history: History | None = None
    last_target: float = 0.0
    last_signal: dict = field(default_factory=dict)

    @property
    def order_key(self) -> str:
        return f"{self.strategy.name}-{self.tf.name}"


class TradingService:
    def __init__(self, *, store: Store, broker: Broker, markets: list[Market], limits: risk.Limits, clock,
                 exchange: str, source=None, leverage: float = 1.0, metrics=None, history_bars: int = 500,
                 mode: str = "paper", crash: CrashPoints | None = None):
        self.store, self.broker, self.markets, self.limits = store, broker, markets, limits
        self.clock, self.exchange, self.source, self.leverage = clock, exchange, source, float(leverage)
        self.metrics, self.history_bars, self.mode = metrics, int(history_bars), mode
        self.crash = crash or CrashPoints()
        self.paper = isinstance(broker, PaperBroker)
        self.start_ms = int(clock.now().value // 1_000_000)
        self.poll_delay = 0.0
        self.lock = threading.RLock()
        state = store.service_state()
        self.risk = risk.RiskState.from_dict(state.get("risk"))
        done = state.get("done", {})
        targets = state.get("targets", {})
        self.saved = {"done": dict(done), "targets": dict(targets), "signals": dict(state.get("signals", {}))}
        self.books = {row["market"]: row for row in store.positions().to_dict("records")}
        self.open_ids = set(store.orders(status=("submitted", "partially_filled", "unknown"))["client_id"])
        self.unknown_misses: dict[str, int] = {}  # consecutive lookups that did not find an unknown order
        for m in markets:
            m.done_ms = int(done.get(m.key, 0))
            m.last_target = float(targets.get(m.key, 0.0))
        self.stats = {"bars": 0, "orders": 0, "fills": 0, "rejected": 0, "unknown": 0, "risk_actions": 0}
        self.snapshot: dict = {}
        self.resume_requested = False
        self.flush_every = 1 if not getattr(clock, "replay", False) else 250
        self.buffer: list[dict] = []  # no-order bars not yet stored: repeated after a crash, which is harmless
        self.buffer_positions: dict[str, dict] = {}
        pending = store.orders(status="pending")
        self.pending = {m.key: bool((pending["market"] == m.key).any()) for m in markets}
        if self.paper:  # the paper broker's orders live in the store: give them back after a restart
            for order in store.orders().to_dict("records"):
                if order["status"] != "rejected" and order["market"] in broker.books:
                    broker.restore(order["market"], order["client_id"],
                                   pd.Timestamp(int(order["created_at"]), unit="ms", tz="UTC"),
                                   float(order["target"]))

    # ------------------------------------------------------------------------------------------------ running

    def run(self, start: pd.Timestamp | None = None) -> None:
        """Until the clock ends (replay) or forever (live): catch up, then one step per candle close."""
        while True:
            now = self.clock.now()
            try:
                self.step(now)
            except ExchangeError as exc:
                if self.clock.replay:
                    raise
                log.error("loop iteration failed (%s); trying again at the next poll", exc)
            nxt = min(m.tf.floor(now) + m.tf.delta for m in self.markets)
            if not self.clock.advance(nxt + pd.Timedelta(seconds=self.poll_delay)):
                break
        with self.lock:
            self.flush()

    def step(self, now: pd.Timestamp) -> int:
        """Process every candle that has closed by ``now``; returns how many."""
        with self.lock:
            if self.resume_requested:
                self._resume()
            processed = 0
            for m in self.markets:
                self._load(m, now)
            self._refresh_open()
            queue = sorted(((int(m.bars["time"].iat[i].value // 1_000_000) + m.tf.seconds * 1000, k, i)
                            for k, m in enumerate(self.markets) if m.bars is not None
                            for i in range(m.fed, len(m.bars))), key=lambda x: (x[0], x[1]))
            for close_ms, k, i in queue:
                self._bar(self.markets[k], i, close_ms)
                processed += 1
            if self.flush_every == 1:
                self.flush()
            self._snapshot(now)
            if self.metrics is not None:
                self.metrics.loop_finished(now.timestamp())
            return processed

    # ------------------------------------------------------------------------------------------------ data

    def _load(self, m: Market, now: pd.Timestamp) -> None:
        closed_end = m.tf.floor(now)  # bars opening before this have closed
        if m.bars is None:
            start = closed_end - m.tf.delta * self.history_bars
            if m.done_ms:
                start = min(start, pd.Timestamp(m.done_ms, unit="ms", tz="UTC") - m.tf.delta * self.history_bars)
            m.first = start
        if self.source is not None:
            since = m.first if m.bars is None or not len(m.bars) else m.bars["time"].iat[-1] + m.tf.delta
            try:
                if since < closed_end:
                    sync_series(self.store, self.source, m.symbol, m.tf, since, closed_end, now=now)
            except TransientExchangeError as exc:
                log.warning("%s: candles not synced this time (%s); trying again next poll", m.key, exc)
                if self.metrics is not None:
                    self.metrics.exchange_error(exc)
        if self.source is None and getattr(self.clock, "replay", False):  # stored candles: read them once
            if m.all_bars is None:
                m.all_bars = self.store.read_bars(self.exchange, m.symbol, m.tf, m.first, self.clock.end)
            n = int(m.all_bars["time"].searchsorted(closed_end, side="left"))
            if m.bars is not None and n == len(m.bars):
                return
            bars = m.all_bars.iloc[:n]
        elif m.bars is None:
            bars = self.store.read_bars(self.exchange, m.symbol, m.tf, m.first, closed_end)
        else:
            last = m.bars["time"].iat[-1] if len(m.bars) else m.first - m.tf.delta
            if last + m.tf.delta >= closed_end:
                return
            new = self.store.read_bars(self.exchange, m.symbol, m.tf, last + m.tf.delta, closed_end)
            if new.empty:
                return
            bars = pd.concat([m.bars, new], ignore_index=True) if len(m.bars) else new
        m.bars = bars
        m.history = History(bars, 0)
        if self.paper:
            self.broker.on_bars(m.key, bars)
        quiet = max(m.done_ms, self.start_ms)  # warm-up bars, and after a restart the bars already done
        if not self.clock.replay and len(bars):  # live: after an outage only the newest closed bar trades
            newest = self._close_ms(m, len(bars) - 1)
            missed = sum(1 for i in range(m.fed, len(bars) - 1) if self._close_ms(m, i) > quiet)
            if missed:
                log.warning("%s: %d candle(s) closed while the service could not trade; their signals are not "
                            "traded late, only the newest candle's", m.key, missed)
            quiet = max(quiet, newest - m.tf.seconds * 1000)
        while m.fed < len(bars) and self._close_ms(m, m.fed) <= quiet:
            m.history._n = m.fed + 1
            m.strategy.on_bar(m.history)
            m.fed += 1

    @staticmethod
    def _close_ms(m: Market, i: int) -> int:
        return int(m.bars["time"].iat[i].value // 1_000_000) + m.tf.seconds * 1000

    # ------------------------------------------------------------------------------------------------ one bar

    def _bar(self, m: Market, i: int, close_ms: int) -> None:
        m.history._n = i + 1
        signal = m.strategy.on_bar(m.history)
        m.fed = i + 1
        target = float(signal[0]) if signal[0] == signal[0] else 0.0
        confidence = None if len(signal) < 2 or signal[1] is None else float(signal[1])
        bar = m.history.bar(-1)
        close = bar["close"]
        self.stats["bars"] += 1
        if self.metrics is not None:  # the candle, and the time from its close to its target
            self.metrics.candle(self.clock.now().timestamp(), close_ms / 1000)
            self.metrics.signal_latency(self.clock.time() - close_ms / 1000)
        decided = pd.Timestamp(close_ms, unit="ms", tz="UTC")
        m.last_signal = {"bar": str(bar["time"]), "target": target, "confidence": confidence}
        equity = self._total_equity()
        for action in risk.on_equity(self.risk, self.limits, equity, decided):
            self._acted(action)
        units, entry = self._position(m)
        reason, flatten = "signal", self.risk.halted and self.limits.max_drawdown is not None and units != 0
        if not self.paper and units:
            exit_ = risk.exit_reason(self.limits, units, entry, bar)
            if exit_ is not None:
                reason, flatten = exit_, True
                self._acted(risk.Action(exit_, f"{m.key}: {exit_} hit at bar {bar['time']}; closing"))
                if exit_ == "stop_loss":
                    risk.start_cooldown(self.risk, self.limits, m.key, close_ms, m.tf.seconds * 1000)
        if self.paper and self._paper_stopped(m, i):
            risk.start_cooldown(self.risk, self.limits, m.key, close_ms, m.tf.seconds * 1000)
        if self.risk.daily_stopped and units:
            flatten, reason = True, "risk"
        changed = target != m.last_target
        orders, new_target = [], m.last_target
        if changed or flatten:
            m_equity = self._market_equity(m)
            wanted = (target * m_equity * self.leverage / close if m.strategy.sizing == "fraction" else target)
            others = self._notional(exclude=m.key)
            same_symbol = self._notional(exclude=m.key, symbol=m.symbol)
            allowed, actions = risk.check_order(
                self.risk, self.limits, market=m.key, current=units, wanted=0.0 if flatten else wanted, price=close,
                equity=equity, other_symbol_notional=same_symbol, other_notional=others, bar_close_ms=close_ms,
                clock_s=self.clock.time(), flatten=flatten)
            for action in actions:
                self._acted(action)
            order_target = target
            if allowed != wanted:
                order_target = (allowed * close / (m_equity * self.leverage) if m.strategy.sizing == "fraction"
                                and m_equity > 0 else allowed)
            delta = allowed - units
            if delta and abs(delta) * close > 1e-9 * m.capital:
                cid = client_order_id(m.order_key, m.symbol, decided, 0 if reason == "signal" else reason[:8])
                orders.append({"client_id": cid, "market": m.key, "symbol": m.symbol,
                               "side": "buy" if delta > 0 else "sell", "quantity": abs(delta),
                               "reduce_only": _reduces(units, allowed) and not self.paper, "reason": reason,
                               "created_at": close_ms, "target": order_target})
                risk.record_order(self.risk, self.clock.time())
            # after an exit the position stays flat until the target changes
            new_target = target if reason in ("stop_loss", "take_profit") or allowed == wanted else order_target
        prediction = {"id": f"{m.order_key}:{m.symbol}:{close_ms}", "market": m.key, "strategy": m.strategy.name,
                      "symbol": m.symbol, "timeframe": m.tf.name, "decided_at": close_ms,
                      "bar_time": int(bar["time"].value // 1_000_000), "target": target, "confidence": confidence,
                      "recorded_at": int(self.clock.time() * 1000)}
        m.last_target = new_target
        if not orders and not self.pending.get(m.key):  # the usual bar: stored with the next batch
            self.buffer.append(prediction)
            self.buffer_positions[m.key] = self._position_row(m, close_ms)
            self._state(m, close_ms)
            m.done_ms = close_ms
            if len(self.buffer) >= self.flush_every:
                self.flush()
            return
        self.flush()
        self.store.record_prediction(prediction, orders)
        self.crash.hit("after_pending")
        for order in self.store.orders(status="pending", market=m.key).to_dict("records"):
            self._send(m, order)
        self.pending[m.key] = bool(len(self.store.orders(status="pending", market=m.key)))
        self.crash.hit("after_fill")
        self.store.set_positions([self._position_row(m, close_ms)], state=self._state(m, close_ms))
        m.done_ms = close_ms

    # ------------------------------------------------------------------------------------------------ orders

    def _send(self, m: Market, order: dict) -> None:
        request = TargetOrder(order["client_id"], order["symbol"], order["side"], float(order["quantity"]),
                              bool(order["reduce_only"]), market=m.key,
                              decided_at=pd.Timestamp(int(order["created_at"]), unit="ms", tz="UTC"),
                              target=float(order["target"]))
        now_ms = int(self.clock.time() * 1000)
        try:
            state = self.broker.place(request)
        except OrderRejected as exc:
            log.warning("order %s rejected: %s", request.client_id, exc)
            self.store.update_order(request.client_id, status="rejected", note=str(exc)[:500], updated_at=now_ms)
            self._count("rejected", exc)
            return
        except OrderStateUnknown as exc:
            log.warning("order %s: state unknown (%s); looked up again at the next bar", request.client_id, exc)
            self.store.update_order(request.client_id, status="unknown", note=str(exc)[:500], updated_at=now_ms)
            self.open_ids.add(request.client_id)
            self._count("unknown", exc)
            return
        except (TransientExchangeError, ExchangeError) as exc:
            log.warning("order %s not sent (%s); it stays pending and is sent again", request.client_id, exc)
            if self.metrics is not None:
                self.metrics.exchange_error(exc)
                self.metrics.order("retried")
            return
        self.stats["orders"] += 1
        if self.metrics is not None:
            self.metrics.order("placed")
        self.crash.hit("after_send")
        self.apply(order, state)

    def apply(self, order: dict, state: OrderState) -> None:
        """Store what the broker says of a stored order; a new fill updates the market's book in the same
        transaction (so a fill is counted once however often this runs)."""
        m = next(x for x in self.markets if x.key == order["market"])
        now_ms = int(self.clock.time() * 1000)
        fields = {"status": state.status, "exchange_id": state.exchange_id, "updated_at": now_ms,
                  "filled_quantity": float(state.filled_quantity or 0.0)}
        if state.average_price is not None:
            fields["average_price"] = float(state.average_price)
        if state.fee is not None:
            fields["fee"] = float(state.fee)
        stored = self.store.order(order["client_id"]) or order
        fill = position = None
        if state.status == "filled" and stored["status"] != "filled" and state.filled_quantity:
            fill_time = int(state.time.value // 1_000_000) if state.time is not None else now_ms
            fill = {"market": m.key, "symbol": m.symbol, "side": order["side"],
                    "quantity": float(state.filled_quantity), "price": float(state.average_price or 0.0),
                    "fee": float(state.fee or 0.0), "time": fill_time}
            if not self.paper:
                position = self._book_after(m, fill)
            self.stats["fills"] += 1
            if self.metrics is not None:
                self.metrics.order("filled")
                self.metrics.fill(state.fee)
        if state.final:
            self.open_ids.discard(order["client_id"])
        else:
            self.open_ids.add(order["client_id"])
        if stored["status"] == state.status and fill is None:
            return
        self.store.update_order(order["client_id"], fill=fill, position=position, **fields)
        if position is not None:
            self.books[m.key] = position

    def flush(self) -> None:
        """Store the buffered no-order bars (predictions, positions, state) in one transaction."""
        if self.buffer or self.buffer_positions:
            self.store.record_predictions(self.buffer, positions=list(self.buffer_positions.values()),
                                          state={**self.saved, "risk": self.risk.to_dict()})
            self.buffer, self.buffer_positions = [], {}

    def _refresh_open(self) -> None:
        """Look up every order that is sent but not finished (or unknown) and store what the broker says."""
        if not self.open_ids:
            return
        for order in self.store.orders(status=("submitted", "partially_filled", "unknown")).to_dict("records"):
            try:
                state = self.broker.lookup(order["symbol"], order["client_id"])
            except ExchangeError as exc:
                log.warning("order %s: lookup failed (%s); asked again next bar", order["client_id"], exc)
                continue
            if state is not None:
                self.unknown_misses.pop(order["client_id"], None)
                self.apply(order, state)
            elif order["status"] == "unknown":
                self._still_unknown(order)

    def _still_unknown(self, order: dict) -> None:
        """An order whose placement could not be confirmed and that the exchange still does not show: after
        ``UNKNOWN_LOOKUPS`` lookups the service stops trading on a belief it cannot check (halt, reduce-only)."""
        cid = order["client_id"]
        self.unknown_misses[cid] = self.unknown_misses.get(cid, 0) + 1
        if self.unknown_misses[cid] >= UNKNOWN_LOOKUPS and not self.risk.halted:
            self.halt(f"order {cid} ({order['side']} {order['quantity']:g} {order['symbol']}) is still unknown to "
                      f"the exchange after {UNKNOWN_LOOKUPS} lookups, so the position may differ from the store; "
                      f"check it on the exchange, then run 'marketsynth trade resume'")

    # ------------------------------------------------------------------------------------------------ books

    def _position(self, m: Market) -> tuple[float, float]:
        if self.paper:
            q, entry, _, _ = self.broker.market_position(m.key)
            return q, entry
        row = self._book(m)
        return row["quantity"], row["entry_price"]

    def _book(self, m: Market) -> dict:
        book = self.books.get(m.key)
        if book is None:
            return {"market": m.key, "symbol": m.symbol, "quantity": 0.0, "entry_price": 0.0, "equity": m.capital,
                    "realised_pnl": 0.0, "fees": 0.0, "updated_at": 0}
        return book

    def _book_after(self, m: Market, fill: dict) -> dict:
        book = self._book(m)
        q, entry, realised = float(book["quantity"]), float(book["entry_price"]), float(book["realised_pnl"])
        dq = fill["quantity"] if fill["side"] == "buy" else -fill["quantity"]
        price = fill["price"]
        if q and (q > 0) != (dq > 0):
            closed = min(abs(q), abs(dq))
            realised += closed * (price - entry) * (1 if q > 0 else -1)
        after = q + dq
        if abs(after) < 1e-12:
            after, entry = 0.0, 0.0
        elif q == 0 or (q > 0) != (after > 0):
            entry = price
        elif abs(after) > abs(q):
            entry = (abs(q) * entry + abs(dq) * price) / abs(after)
        fees = float(book["fees"]) + fill["fee"]
        last = float(m.bars["close"].iat[m.fed - 1]) if m.bars is not None and m.fed else price
        equity = m.capital + realised - fees + after * (last - entry)
        return {"market": m.key, "symbol": m.symbol, "quantity": after, "entry_price": entry, "equity": equity,
                "realised_pnl": realised, "fees": fees, "updated_at": fill["time"]}

    def _market_equity(self, m: Market) -> float:
        if self.paper:
            return self.broker.market_equity(m.key)
        book = self._book(m)
        last = float(m.bars["close"].iat[m.fed - 1]) if m.bars is not None and m.fed else book["entry_price"]
        return (m.capital + float(book["realised_pnl"]) - float(book["fees"])
                + float(book["quantity"]) * (last - float(book["entry_price"])))

    def _total_equity(self) -> float:
        return sum(self._market_equity(m) for m in self.markets)

    def _notional(self, *, exclude: str, symbol: str | None = None) -> float:
        total = 0.0
        for m in self.markets:
            if m.key == exclude or (symbol is not None and m.symbol != symbol) or m.bars is None or not m.fed:
                continue
            total += abs(self._position(m)[0]) * float(m.bars["close"].iat[m.fed - 1])
        return total

    def _position_row(self, m: Market, close_ms: int) -> dict:
        if self.paper:
            q, entry, unreal, _ = self.broker.market_position(m.key)
            ledger = self.broker.ledger(m.key)
            fees = sum(f[4] for f in ledger.fills) if ledger is not None else 0.0
            realised = sum(t[8] for t in ledger.trades) if ledger is not None else 0.0
            return {"market": m.key, "symbol": m.symbol, "quantity": q, "entry_price": entry,
                    "equity": self.broker.market_equity(m.key), "realised_pnl": realised, "fees": fees,
                    "updated_at": close_ms}
        book = self._book(m)
        return {**book, "equity": self._market_equity(m), "updated_at": close_ms}

    def _paper_stopped(self, m: Market, i: int) -> bool:
        ledger = self.broker.ledger(m.key)
        return bool(ledger is not None and ledger.trades and ledger.trades[-1][1] == i
                    and ledger.trades[-1][10] == "stop_loss")

    # ------------------------------------------------------------------------------------------------ state

    def _state(self, m: Market, close_ms: int) -> dict:
        self.saved["done"][m.key] = close_ms
        self.saved["targets"][m.key] = m.last_target
        self.saved["signals"][m.key] = m.last_signal
        return {**self.saved, "risk": self.risk.to_dict()}

    def _acted(self, action: risk.Action) -> None:
        self.stats["risk_actions"] += 1
        if self.metrics is not None:
            self.metrics.risk_action(action.control)

    def _count(self, outcome: str, exc: BaseException) -> None:
        self.stats[outcome] += 1
        if self.metrics is not None:
            self.metrics.order(outcome)
            self.metrics.exchange_error(exc)

    def halt(self, reason: str, control: str = "reconcile_mismatch") -> None:
        with self.lock:
            self._acted(risk.halt(self.risk, reason, control))
            self.store.set_state({"risk": self.risk.to_dict()})

    def request_resume(self) -> None:
        self.resume_requested = True

    def _resume(self) -> None:
        risk.resume(self.risk, self._total_equity())
        self.resume_requested = False
        self.store.set_state({"risk": self.risk.to_dict()})
        log.warning("resumed: the halt is cleared and the service trades again")

    def _snapshot(self, now: pd.Timestamp) -> None:
        positions, equity, unrealised = [], 0.0, 0.0
        for m in self.markets:
            q, entry = self._position(m)
            e = self._market_equity(m)
            equity += e
            if q and m.bars is not None and m.fed:
                unrealised += q * (float(m.bars["close"].iat[m.fed - 1]) - entry)
            positions.append({"market": m.key, "symbol": m.symbol, "quantity": q, "entry_price": entry,
                              "equity": round(e, 2)})
            if self.metrics is not None:
                self.metrics.set_position(m.symbol, q)
        if self.metrics is not None and math.isfinite(equity):
            self.metrics.set_equity(equity)
            # P&L after fees and funding: unrealised on the open positions at the last close, the rest realised
            self.metrics.set_pnl(equity - sum(m.capital for m in self.markets) - unrealised, unrealised)
        open_orders = (self.store.orders(status=("pending", "submitted", "partially_filled", "unknown"))
                       if self.open_ids or any(self.pending.values()) else self.store.orders(status="none"))
        self.snapshot = {"mode": self.mode, "now": str(now), "equity": round(equity, 2), "positions": positions,
                         "open_orders": open_orders[["client_id", "market", "side", "quantity", "status"]]
                         .to_dict("records"),
                         "last_signal": {m.key: m.last_signal for m in self.markets},
                         "risk": {"halted": self.risk.halted, "halt_reason": self.risk.halt_reason,
                                  "daily_stopped": self.risk.daily_stopped, "high_water": self.risk.high_water,
                                  "cooldown_until": self.risk.cooldown_until},
                         "stats": dict(self.stats)}


def _reduces(current: float, wanted: float) -> bool:
    return wanted == 0 or (current != 0 and (current > 0) == (wanted > 0) and abs(wanted) < abs(current))


def market_key(symbol: str, interval: str) -> str:
    return f"{symbol.upper()}:{parse_timeframe(interval).name}"


__all__ = ["CRASH_ENV", "CrashPoints", "Market", "MarketSynthError", "TradingService", "market_key", "to_ms"]
