"""The paper broker: fills the service's orders the way the backtester does, by running the backtester's ledger.

Each market (a symbol × interval traded by one strategy) is a separate book with its own capital. An order placed
after bar ``t``'s close (``TargetOrder``: an ``OrderRequest`` that names its market, its decision bar and the
strategy's target) fills at bar ``t + 1``'s open with the backtester's fee, slippage, funding and isolated-margin
model, stops and liquidation included — because the broker keeps the market's bars and its ``(bar, target)``
orders and lets ``marketsynth.trading.ledger.Ledger`` account for them, exactly as ``backtest`` does. Parity with
``marketsynth backtest`` over the same bars and costs therefore holds by construction (a test checks it). With
fraction targets the quantity is fixed at the fill, from the equity at that open, as in the backtest; the order's
own ``quantity`` is the service's estimate at the decision and is not used here.

An order waits ("submitted") until the market's next bar is known (``on_bars``), then is "filled" (or "cancelled"
when its target needed no trade or the account is wiped out).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from marketsynth.errors import ConfigError
from marketsynth.trading.brokers.base import Balance, Broker, OrderRequest, OrderState, Position
from marketsynth.trading.costs import Costs, funding_events
from marketsynth.trading.ledger import Ledger


@dataclass(frozen=True)
class TargetOrder(OrderRequest):
    """An order that serves a strategy's target: ``market`` (``SYMBOL:interval``), the decision bar's close time
    and the target (fraction of equity or units, the strategy's sizing). Exchange adapters read only the
    ``OrderRequest`` fields."""

    market: str = ""
    decided_at: pd.Timestamp | None = None
    target: float | None = None


@dataclass
class _Book:
    symbol: str
    capital: float
    costs: Costs
    leverage: float
    stop_loss: float | None
    take_profit: float | None
    funding: object
    sizing: str
    bars: pd.DataFrame | None = None
    orders: dict[str, tuple[pd.Timestamp, float]] = field(default_factory=dict)  # client id -> (decided, target)
    cache: tuple | None = None


class PaperBroker(Broker):
    """Simulated fills for the trading service; see the module docstring."""

    def __init__(self):
        self.books: dict[str, _Book] = {}

    def add_market(self, market: str, symbol: str, *, capital: float, costs: Costs, leverage: float = 1.0,
                   stop_loss: float | None = None, take_profit: float | None = None, funding=None,
                   sizing: str = "fraction") -> None:
        self.books[market] = _Book(symbol, float(capital), costs, float(leverage), stop_loss, take_profit, funding,
                                   sizing)

    def on_bars(self, market: str, bars: pd.DataFrame) -> None:
        """The market's closed bars so far (a bars frame; the same frame the strategy sees)."""
        book = self._book(market)
        book.bars = bars
        book.cache = None

    def restore(self, market: str, client_id: str, decided_at, target: float) -> None:
        """Re-register an order placed before a restart (from the store)."""
        self._book(market).orders[client_id] = (pd.Timestamp(decided_at), float(target))
        self._book(market).cache = None

    # ---------------------------------------------------------------- Broker

    def place(self, order: OrderRequest) -> OrderState:
        if not isinstance(order, TargetOrder) or order.target is None or order.decided_at is None:
            raise ConfigError("the paper broker takes TargetOrder requests (market, decision time and target)")
        book = self._book(order.market)
        if order.client_id not in book.orders:
            book.orders[order.client_id] = (pd.Timestamp(order.decided_at), float(order.target))
            book.cache = None
        return self.lookup(order.symbol, order.client_id)

    def cancel(self, symbol: str, client_id: str) -> OrderState | None:
        for book in self.books.values():
            if client_id in book.orders:
                state = self.lookup(symbol, client_id)
                if state is not None and not state.final:
                    del book.orders[client_id]
                    book.cache = None
                    return OrderState(client_id, None, "cancelled", 0.0, None, None, None)
                return state
        return None

    def lookup(self, symbol: str, client_id: str) -> OrderState | None:
        for book in self.books.values():
            if client_id in book.orders:
                return self._state(book, client_id)
        return None

    def positions(self) -> dict[str, Position]:
        out: dict[str, list[float]] = {}
        for market in self.books:
            q, entry, unreal, lev = self.market_position(market)
            if q:
                acc = out.setdefault(self.books[market].symbol, [0.0, 0.0, 0.0, lev])
                acc[1] = (acc[0] * acc[1] + q * entry) / (acc[0] + q) if acc[0] + q else 0.0
                acc[0] += q
                acc[2] += unreal
        return {s: Position(s, q, e, u, lev) for s, (q, e, u, lev) in out.items() if q}

    def balance(self) -> Balance:
        equity = sum(self.market_equity(m) for m in self.books)
        return Balance(equity, equity)

    def server_time_ms(self) -> int:
        return int(pd.Timestamp.now(tz="UTC").value // 1_000_000)

    # ---------------------------------------------------------------- per market

    def market_equity(self, market: str) -> float:
        book = self._book(market)
        ledger, curves = self._run(book)
        return float(curves["equity"][-1]) if curves is not None else book.capital

    def market_position(self, market: str) -> tuple[float, float, float, float]:
        """(units, average entry, unrealised P&L at the last close, leverage) of the market's book."""
        book = self._book(market)
        ledger, curves = self._run(book)
        if ledger is None:
            return 0.0, 0.0, 0.0, book.leverage
        last = float(ledger.close[-1])
        return ledger.q, ledger.entry, ledger.q * (last - ledger.entry), book.leverage

    def ledger(self, market: str) -> Ledger | None:
        """The market's ledger over its bars so far (for trades, fills and the equity curve)."""
        return self._run(self._book(market))[0]

    # ---------------------------------------------------------------- internals

    def _book(self, market: str) -> _Book:
        if market not in self.books:
            raise ConfigError(f"the paper broker trades no market {market!r}")
        return self.books[market]

    def _bar_of(self, book: _Book, decided_at: pd.Timestamp) -> int | None:
        """The bar whose close is ``decided_at`` (its open is one interval earlier): the last bar opening before."""
        times = book.bars["time"]
        i = int(times.searchsorted(decided_at, side="left")) - 1
        return i if i >= 0 else None

    def _run(self, book: _Book):
        if book.bars is None or len(book.bars) < 2:
            return None, None
        key = (len(book.bars), len(book.orders))
        if book.cache is not None and book.cache[0] == key:
            return book.cache[1], book.cache[2]
        bars = book.bars
        n = len(bars)
        prices = {k: bars[k].to_numpy(dtype="float64") for k in ("open", "high", "low", "close")}
        times = bars["time"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")
        with warnings.catch_warnings():  # a stored funding series shorter than the bars is expected while live
            warnings.simplefilter("ignore")
            fbars, rates = funding_events(times, book.funding)
        funding_sum = None
        if len(fbars):
            step = np.zeros(n)
            step[fbars] = prices["open"][fbars] * rates
            funding_sum = np.cumsum(step)
        ledger = Ledger(prices, funding_sum, capital=book.capital, costs=book.costs, leverage=book.leverage,
                        fill="open", stop_loss=book.stop_loss, take_profit=book.take_profit, sizing=book.sizing)
        placed = sorted((decided, target) for decided, target in book.orders.values())
        for decided, target in placed:
            bar = self._bar_of(book, decided)
            if bar is None or ledger.wiped_bar is not None:
                continue
            ledger.order(bar, target)
        ledger.scan(n)
        curves = ledger.curves()
        book.cache = (key, ledger, curves)
        return ledger, curves

    def _state(self, book: _Book, client_id: str) -> OrderState:
        decided, _ = book.orders[client_id]
        ledger, _ = self._run(book)
        bar = None if ledger is None else self._bar_of(book, decided)
        if ledger is None or bar is None or bar + 1 >= ledger.n:
            return OrderState(client_id, client_id, "submitted", 0.0, None, None, None)
        fill_bar = bar + 1
        fills = [f for f in ledger.fills if f[0] == fill_bar and f[6] == "signal"]
        time = pd.Timestamp(book.bars["time"].iat[fill_bar])
        if not fills:
            return OrderState(client_id, client_id, "cancelled", 0.0, None, 0.0, time)
        quantity = sum(abs(f[2]) for f in fills)
        price = sum(abs(f[2]) * f[3] for f in fills) / quantity if quantity else None
        return OrderState(client_id, client_id, "filled", quantity, price, sum(f[4] for f in fills), time)
