"""The fake exchange's account simulator: a USDT-margined account in one-way mode, cross margin.

Market orders fill at once, in full, at the price given (the fake's current candle open) and pay the taker fee.
An order that grows or flips a position is refused ("margin") when the equity after its fee would not cover the
initial margin (``|quantity| × price / leverage``) of every position; an order that only shrinks a position
always passes. A reduce-only order is refused ("reduce_only") unless it shrinks the position: none, same side or
larger than it is refused (the fake's reading of Bybit 110017 / Binance −2022). Quantities are decimals, so
positions add up exactly; money is float.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

OPEN = ("NEW", "PARTIALLY_FILLED")


@dataclass(frozen=True)
class Rules:
    """A symbol's lot size and tick, served in instruments-info / exchangeInfo and enforced on orders."""

    qty_step: Decimal = Decimal("0.001")
    min_qty: Decimal = Decimal("0.001")
    max_qty: Decimal = Decimal("1000")
    max_market_qty: Decimal = Decimal("120")
    tick_size: Decimal = Decimal("0.1")


@dataclass
class FakeOrder:
    venue: str
    order_id: int
    client_id: str
    symbol: str
    side: str  # "buy" | "sell"
    quantity: Decimal
    reduce_only: bool
    status: str  # Binance's words: NEW, PARTIALLY_FILLED, FILLED, CANCELED
    created_ms: int
    updated_ms: int
    filled: Decimal = Decimal(0)
    average_price: float = 0.0
    fee: float = 0.0
    realized_pnl: float = 0.0


class FakeAccount:
    """A USDT-margined account in one-way mode: wallet, positions (signed base units, entry price), orders."""

    def __init__(self, venue: str, balance: float, leverage: float):
        self.venue = venue
        self.wallet = float(balance)
        self.leverage = float(leverage)
        self.positions: dict[str, tuple[Decimal, float]] = {}
        self.orders: list[FakeOrder] = []
        self.next_id = 1000

    def position(self, symbol: str) -> float:
        return float(self.positions.get(symbol, (Decimal(0), 0.0))[0])

    def unrealised(self, symbol: str, price: float | None) -> float:
        quantity, entry = self.positions.get(symbol, (Decimal(0), 0.0))
        return 0.0 if price is None else (price - entry) * float(quantity)

    def margin(self, prices: dict[str, float | None]) -> tuple[float, float]:
        """(equity, initial margin of every position), marking positions at ``prices``."""
        equity = self.wallet + sum(self.unrealised(s, prices.get(s)) for s in self.positions)
        initial = sum(abs(float(q)) * (prices.get(s) or e) / self.leverage for s, (q, e) in self.positions.items())
        return equity, initial

    def check(self, symbol: str, delta: Decimal, reduce_only: bool, price: float, fee_rate: float,
              prices: dict[str, float | None]) -> str | None:
        """Why an order of ``delta`` (signed) at ``price`` is refused: "reduce_only", "margin" or None."""
        current = self.positions.get(symbol, (Decimal(0), 0.0))[0]
        after = current + delta
        reduces = current != 0 and (current > 0) != (delta > 0) and abs(delta) <= abs(current)
        if reduce_only and not reduces:
            return "reduce_only"
        if reduces:
            return None
        equity, initial = self.margin(prices)
        fee = abs(float(delta)) * price * fee_rate
        initial_after = initial + (abs(float(after)) - abs(float(current))) * price / self.leverage
        return "margin" if equity - fee < initial_after else None

    def fill(self, order: FakeOrder, price: float, fee_rate: float, now_ms: int) -> None:
        delta = order.quantity if order.side == "buy" else -order.quantity
        current, entry = self.positions.get(order.symbol, (Decimal(0), 0.0))
        fee = float(order.quantity) * price * fee_rate
        realized = 0.0
        if current and (current > 0) != (delta > 0):  # reduces, closes or flips
            closed = min(abs(current), abs(delta))
            realized = (price - entry) * float(closed) * (1 if current > 0 else -1)
        after = current + delta
        if after == 0:
            self.positions.pop(order.symbol, None)
        elif current == 0 or (current > 0) != (after > 0):
            self.positions[order.symbol] = (after, price)
        elif abs(after) > abs(current):
            self.positions[order.symbol] = (after, (entry * float(abs(current)) + price * float(abs(delta)))
                                            / float(abs(after)))
        else:
            self.positions[order.symbol] = (after, entry)
        self.wallet += realized - fee
        order.status, order.filled, order.average_price = "FILLED", order.quantity, price
        order.fee, order.realized_pnl, order.updated_ms = fee, realized, now_ms
