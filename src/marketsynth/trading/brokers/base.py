"""The one broker interface: the simulated and paper brokers and the exchange order adapters speak it.

Orders are market orders in base units (``OrderRequest``); every order carries a client order id derived from
what it is for (``client_order_id``), so the same decision always produces the same id. That id is what makes
placement idempotent: a broker never opens a second order for an id it already holds (``Broker.place``), and
``Broker.lookup`` finds an order by it, open or finished, after a restart or a lost reply.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, InvalidOperation

import pandas as pd

from marketsynth.errors import ConfigError, OrderRejected
from marketsynth.timeframes import to_ms, to_utc

SIDES = ("buy", "sell")
ORDER_STATUSES = ("pending", "submitted", "partially_filled", "filled", "cancelled", "rejected")
#: Statuses after which an order changes no more.
FINAL_STATUSES = ("filled", "cancelled", "rejected")

#: What both exchanges accept as a client order id (Bybit ``orderLinkId``, Binance ``newClientOrderId``).
CLIENT_ID_PATTERN = re.compile(r"[A-Za-z0-9-]{1,36}")
_LEG_PATTERN = re.compile(r"[A-Za-z0-9]{1,8}")
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class OrderRequest:
    """A market order: buy or sell ``quantity`` base units of ``symbol`` (> 0); ``reduce_only`` orders may only
    shrink the position."""

    client_id: str
    symbol: str
    side: str
    quantity: float
    reduce_only: bool = False

    def __post_init__(self):
        if not CLIENT_ID_PATTERN.fullmatch(self.client_id or ""):
            raise ConfigError(f"client order id {self.client_id!r} is not 1-36 characters of [A-Za-z0-9-]; "
                              "make it with client_order_id()")
        if self.side not in SIDES:
            raise ConfigError(f"order side {self.side!r} is not 'buy' or 'sell'")
        if not (isinstance(self.quantity, int | float) and self.quantity > 0 and self.quantity != float("inf")):
            raise ConfigError(f"order quantity {self.quantity!r} must be a positive number of base units")
        if not self.symbol or self.symbol != self.symbol.strip().upper():
            raise ConfigError(f"order symbol {self.symbol!r} must be an upper-case symbol such as BTCUSDT")


@dataclass(frozen=True)
class OrderState:
    """What a broker knows of one order. ``fee`` is in the quote/settle asset, None when not known;
    ``average_price`` is None until something filled; ``time`` is the exchange's last update (UTC)."""

    client_id: str
    exchange_id: str | None
    status: str
    filled_quantity: float
    average_price: float | None
    fee: float | None
    time: pd.Timestamp | None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class Position:
    """An open position: ``quantity`` in base units, positive long and negative short."""

    symbol: str
    quantity: float
    entry_price: float
    unrealised_pnl: float
    leverage: float


@dataclass(frozen=True)
class Balance:
    """Account value in the settle asset (USDT): ``equity`` includes unrealised P&L; ``available`` is what new
    orders may use as margin."""

    equity: float
    available: float


class Broker(ABC):
    """Places, cancels and finds market orders by client order id; reports positions, balance and its clock."""

    @abstractmethod
    def place(self, order: OrderRequest) -> OrderState:
        """Send ``order`` unless the broker already holds an order with its client id, whose state is then
        returned instead: a second call never opens a second order. ``OrderRejected`` when refused;
        ``OrderStateUnknown`` when it cannot tell whether the order exists."""

    @abstractmethod
    def cancel(self, symbol: str, client_id: str) -> OrderState | None:
        """Cancel the open order ``client_id``; its state afterwards (an order that had already filled stays
        filled), None when there is no such order."""

    @abstractmethod
    def lookup(self, symbol: str, client_id: str) -> OrderState | None:
        """The order with this client id, open or finished; None when the broker has none."""

    @abstractmethod
    def positions(self) -> dict[str, Position]:
        """Every non-zero position by symbol."""

    @abstractmethod
    def balance(self) -> Balance:
        """The account's equity and available margin."""

    @abstractmethod
    def server_time_ms(self) -> int:
        """The broker's clock, in ms since the epoch."""


def client_order_id(strategy: str, symbol: str, bar_close_time, leg: int | str = 0) -> str:
    """The client order id for ``leg`` of ``strategy``'s order on ``symbol`` at the bar closing at
    ``bar_close_time``: the same inputs always give the same id, different inputs a different one.

    ``ms`` + 13 base-36 digits of SHA-256(strategy, symbol) + ``-`` + the bar close time in ms, base 36 + ``-`` +
    the leg (a number or up to 8 letters and digits; ``1`` and ``"1"`` are the same leg): at most 36 characters of
    ``[A-Za-z0-9-]``, valid as a Bybit ``orderLinkId`` and a Binance ``newClientOrderId``. Two different
    (strategy, symbol) pairs share an id only if 64 bits of SHA-256 collide.
    """
    if not isinstance(strategy, str) or not strategy:
        raise ConfigError("client_order_id needs a strategy name")
    if not isinstance(symbol, str) or not symbol.strip():
        raise ConfigError("client_order_id needs a symbol")
    if isinstance(leg, bool) or not isinstance(leg, int | str):
        raise ConfigError(f"order leg {leg!r} must be a number or a short name")
    leg_text = str(leg)
    if not _LEG_PATTERN.fullmatch(leg_text):
        raise ConfigError(f"order leg {leg!r} must be a number or 1-8 letters and digits (e.g. 0, 1, 'exit')")
    close_ms = to_ms(to_utc(bar_close_time))
    if close_ms < 0:
        raise ConfigError(f"bar close time {bar_close_time!r} is before 1970")
    digest = hashlib.sha256(f"{strategy}\x00{symbol.strip().upper()}".encode()).digest()
    key = _base36(int.from_bytes(digest[:8], "big")).rjust(13, "0")
    return f"ms{key}-{_base36(close_ms)}-{leg_text}"


def _base36(value: int) -> str:
    digits = []
    while True:
        value, rest = divmod(value, 36)
        digits.append(_BASE36[rest])
        if not value:
            return "".join(reversed(digits))


@dataclass(frozen=True)
class Instrument:
    """A symbol's trading rules as the exchange states them: quantity step and bounds, price tick."""

    symbol: str
    qty_step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    tick_size: Decimal

    @classmethod
    def from_text(cls, symbol: str, qty_step, min_qty, max_qty, tick_size) -> Instrument:
        try:
            values = [Decimal(str(v)).normalize() for v in (qty_step, min_qty, max_qty, tick_size)]
        except (InvalidOperation, ValueError):
            raise OrderRejected(f"{symbol}: the exchange's lot size or tick size is not a number") from None
        return cls(symbol, *values)

    def quantity_text(self, quantity: float) -> str:
        """``quantity`` rounded down to the lot step, as the exchange wants it; OrderRejected below the minimum
        or above the maximum (rounding down never trades more than asked)."""
        step = self.qty_step if self.qty_step > 0 else Decimal(1)
        steps = Decimal(repr(float(quantity))) / step
        whole = steps.to_integral_value(rounding=ROUND_FLOOR)
        if steps - whole > Decimal("0.999999"):  # 0.30000000000000004 / 0.1 is 3 steps, not 2
            whole += 1
        rounded = whole * step
        if rounded < self.min_qty or rounded <= 0:
            raise OrderRejected(f"{self.symbol}: quantity {quantity:g} rounds down to {_plain(rounded)} at the lot "
                                f"step {_plain(self.qty_step)}, below the minimum order of {_plain(self.min_qty)}; "
                                "trade more or skip it")
        if self.max_qty > 0 and rounded > self.max_qty:
            raise OrderRejected(f"{self.symbol}: quantity {_plain(rounded)} is above the maximum market order of "
                                f"{_plain(self.max_qty)}; split the order")
        return _plain(rounded)

    def price_text(self, price: float) -> str:
        """``price`` rounded to the nearest tick, as text."""
        tick = self.tick_size if self.tick_size > 0 else Decimal("0.00000001")
        ticks = (Decimal(repr(float(price))) / tick).to_integral_value()
        return _plain(ticks * tick)


def _plain(value: Decimal) -> str:
    """A decimal as plain text without exponent or trailing zeros: ``0.003``, ``30``."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
