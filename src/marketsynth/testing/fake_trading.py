"""The fake exchange's order endpoints: one account per exchange, spoken to through Bybit v5 and Binance
USDⓈ-M's signed APIs exactly as documented, with fault injection.

Bybit: ``POST /v5/order/create``, ``POST /v5/order/cancel``, ``GET /v5/order/realtime``, ``/v5/order/history``,
``/v5/position/list``, ``/v5/account/wallet-balance``. Binance: ``POST|DELETE|GET /fapi/v1/order``,
``GET /fapi/v1/userTrades``, ``/fapi/v2/positionRisk``, ``/fapi/v2/balance``.

**Authentication** is checked as each exchange documents it. Bybit: ``X-BAPI-API-KEY`` must be a known key
(else 10003), ``server_time - recv_window <= X-BAPI-TIMESTAMP < server_time + 1000`` (else 10002; the window
defaults to 5000 ms) and ``X-BAPI-SIGN`` must be the HMAC-SHA256 of timestamp + key + recv_window + the raw query
string (GET) or raw body (POST) (else 10004, whose message quotes the signed text as Bybit's does). Binance:
``X-MBX-APIKEY`` known (else −2015, −2014 when missing), ``signature`` the last parameter and the HMAC-SHA256 of
query string + body without it (else −1022), ``timestamp < serverTime + 1000`` and ``serverTime - timestamp <=
recvWindow`` (else −1021). The server time is the fake's clock (``FakeExchange.reported_now``).

**The account** (``fake_account.FakeAccount``, one per exchange) fills market orders at once, in full, at the
fake's current price — the open of the base candle containing the market clock ``now`` — and charges the taker
fee; it refuses orders without margin (Bybit 110007, Binance −2019) and reduce-only orders that would not shrink
the position (Bybit 110017, Binance −2022). Bybit refuses an ``orderLinkId`` it has ever seen (110072, also after
a fill); Binance refuses a ``newClientOrderId`` only while an open order has it (−4116). Refused orders are not
kept.

**Faults** (``fake.trading.faults.add(kind, times=1, on="place")``), first added first used, on order placement
(``on="place"``), lookups (``"query"``: every GET), cancels (``"cancel"``) or any of them (``"any"``):
``timeout_after_store`` (the request is carried out, then the connection closes without an answer: the client
sees a dropped connection, no socket wait), ``unknown_after_store`` (carried out, then Binance's HTTP 503
"Unknown error, please check your request or try again later." / Bybit's retCode 10016), ``500``/``502``/``503``
(nothing carried out), ``429`` (Binance −1015 with ``Retry-After``; Bybit HTTP 429 with its limit headers),
``10006`` (Bybit retCode 10006 with ``X-Bapi-Limit-Status: 0`` and ``X-Bapi-Limit-Reset-Timestamp``; a 429 on
Binance), ``duplicate`` (Bybit 110072 / Binance −4116 without storing), ``unfilled`` (the order is kept open,
unfilled, until ``fill_open_orders`` or a cancel) and, for lookups, ``not_visible`` (an order lookup answers as if
there were no such order: an exchange whose order views lag behind its matching engine).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl, urlsplit

import pandas as pd

from marketsynth.testing.fake_account import OPEN, FakeAccount, FakeOrder, Rules
from marketsynth.testing.fake_market import FakeMarket
from marketsynth.timeframes import to_ms

BYBIT_CREATE, BYBIT_CANCEL = "/v5/order/create", "/v5/order/cancel"
BYBIT_REALTIME, BYBIT_HISTORY = "/v5/order/realtime", "/v5/order/history"
BYBIT_POSITIONS, BYBIT_WALLET = "/v5/position/list", "/v5/account/wallet-balance"
BINANCE_ORDER, BINANCE_TRADES = "/fapi/v1/order", "/fapi/v1/userTrades"
BINANCE_POSITIONS, BINANCE_BALANCE = "/fapi/v2/positionRisk", "/fapi/v2/balance"
TRADING_PATHS = frozenset({BYBIT_CREATE, BYBIT_CANCEL, BYBIT_REALTIME, BYBIT_HISTORY, BYBIT_POSITIONS, BYBIT_WALLET,
                           BINANCE_ORDER, BINANCE_TRADES, BINANCE_POSITIONS, BINANCE_BALANCE})
TRADING_FAULT_KINDS = ("timeout_after_store", "unknown_after_store", "500", "502", "503", "429", "10006",
                       "duplicate", "unfilled", "not_visible")
FAULT_TARGETS = ("place", "query", "cancel", "any")
TAKER_FEE = {"bybit": 0.00055, "binance": 0.0005}
BINANCE_UNKNOWN = "Unknown error, please check your request or try again later."
BYBIT_LINK_ID = re.compile(r"[A-Za-z0-9_-]{1,36}")
BINANCE_CLIENT_ID = re.compile(r"[.A-Z:/a-z0-9_-]{1,36}")
BYBIT_STATUS = {"NEW": "New", "PARTIALLY_FILLED": "PartiallyFilled", "FILLED": "Filled", "CANCELED": "Cancelled"}


@dataclass
class TradingReply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    hang_up: bool = False


@dataclass(frozen=True)
class TradingRequest:
    """One request to an order endpoint as the fake saw it: ``code`` is the exchange error code answered (0 ok)."""

    venue: str
    method: str
    path: str
    status: int
    code: int
    fault: str | None = None


@dataclass
class TradingFault:
    kind: str
    times: int
    on: str
    retry_after: float
    reset: float


class TradingFaults:
    """Faults for the next order-endpoint requests, first added first used; thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._queue: deque[TradingFault] = deque()

    def add(self, kind: str, times: int = 1, *, on: str = "place", retry_after: float = 1.0,
            reset: float = 1.0) -> None:
        if kind not in TRADING_FAULT_KINDS:
            raise ValueError(f"unknown trading fault {kind!r}; use one of {', '.join(TRADING_FAULT_KINDS)}")
        if on not in FAULT_TARGETS:
            raise ValueError(f"fault target {on!r} is not one of {', '.join(FAULT_TARGETS)}")
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._queue.append(TradingFault(kind, times, on, retry_after, reset))

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def take(self, target: str) -> TradingFault | None:
        with self._lock:
            for fault in self._queue:
                if fault.on in (target, "any"):
                    fault.times -= 1
                    if fault.times == 0:
                        self._queue.remove(fault)
                    return fault
        return None

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)


class _Refusal(Exception):
    """An error answer: the exchange's code, message and HTTP status."""

    def __init__(self, code: int, message: str, status: int = 200):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class FakeTrading:
    """The order side of the fake exchange: accounts, keys, faults and the request log."""

    def __init__(self, market: FakeMarket, server_time: Callable[[], pd.Timestamp], *, balance: float = 10_000.0,
                 leverage: float = 10.0):
        self.market = market
        self.server_time = server_time
        self.keys: dict[str, dict[str, str]] = {"bybit": {}, "binance": {}}
        self.accounts = {venue: FakeAccount(venue, balance, leverage) for venue in ("bybit", "binance")}
        self.taker_fee = dict(TAKER_FEE)
        self.rules: dict[str, Rules] = {}
        self.faults = TradingFaults()
        self._lock = threading.RLock()
        self._log: list[TradingRequest] = []

    # ---------------------------------------------------------------- set-up and inspection

    def add_key(self, venue: str, api_key: str, api_secret: str) -> None:
        self.keys[venue][api_key] = api_secret

    def rules_for(self, symbol: str) -> Rules:
        return self.rules.get(symbol, Rules())

    def price(self, symbol: str) -> float | None:
        """The open of the base candle containing the market clock ``now``; None when there is none."""
        now = self.market.now
        tf = self.market.base_timeframe
        series = self.market.series(symbol.upper(), tf)
        if not len(series.times) or series.times[-1] != to_ms(tf.floor(now)):
            return None
        return float(series.values[-1][0])

    def orders(self, venue: str, client_id: str | None = None) -> list[FakeOrder]:
        with self._lock:
            return [o for o in self.accounts[venue].orders if client_id is None or o.client_id == client_id]

    def position(self, venue: str, symbol: str) -> float:
        with self._lock:
            return self.accounts[venue].position(symbol)

    @property
    def requests(self) -> list[TradingRequest]:
        with self._lock:
            return list(self._log)

    def fill_open_orders(self) -> None:
        """Fill every order an ``unfilled`` fault left open, at the current price."""
        with self._lock:
            for venue, account in self.accounts.items():
                for order in account.orders:
                    price = self.price(order.symbol)
                    if order.status in OPEN and price is not None:
                        account.fill(order, price, self.taker_fee[venue], self._now_ms())

    def bybit_instrument_fields(self, symbol: str) -> dict:
        """``lotSizeFilter`` and ``priceFilter`` of a Bybit instruments-info item."""
        r = self.rules_for(symbol)
        return {"lotSizeFilter": {"maxOrderQty": _text(r.max_qty), "maxMktOrderQty": _text(r.max_market_qty),
                                  "minOrderQty": _text(r.min_qty), "qtyStep": _text(r.qty_step),
                                  "postOnlyMaxOrderQty": _text(r.max_qty), "minNotionalValue": "5"},
                "priceFilter": {"minPrice": _text(r.tick_size), "maxPrice": "1999999.8",
                                "tickSize": _text(r.tick_size)}}

    def binance_symbol_fields(self, symbol: str) -> dict:
        """``filters`` and precisions of a Binance exchangeInfo symbol."""
        r = self.rules_for(symbol)
        return {"pricePrecision": 2, "quantityPrecision": max(0, -r.qty_step.normalize().as_tuple().exponent),
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": _text(r.tick_size), "maxPrice": "4529764",
                     "tickSize": _text(r.tick_size)},
                    {"filterType": "LOT_SIZE", "stepSize": _text(r.qty_step), "minQty": _text(r.min_qty),
                     "maxQty": _text(r.max_qty)},
                    {"filterType": "MARKET_LOT_SIZE", "stepSize": _text(r.qty_step), "minQty": _text(r.min_qty),
                     "maxQty": _text(r.max_market_qty)},
                    {"filterType": "MIN_NOTIONAL", "notional": "5"},
                ]}

    # ---------------------------------------------------------------- one request

    def handle(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> TradingReply:
        """Answer one request (``headers`` with lower-case names; ``query`` and ``body`` raw, as signed)."""
        venue = "bybit" if path.startswith("/v5/") else "binance"
        target = ("place" if method == "POST" and path in (BYBIT_CREATE, BINANCE_ORDER)
                  else "cancel" if path == BYBIT_CANCEL or method == "DELETE" else "query")
        fault: TradingFault | None = None
        with self._lock:
            try:
                try:
                    text = body.decode()
                except UnicodeDecodeError:
                    raise _Refusal(10001 if venue == "bybit" else -1100, "body is not UTF-8", 400) from None
                if venue == "bybit":
                    params = self._bybit_auth(method, query, headers, text)
                else:
                    params = self._binance_auth(query, headers, text)
                fault = self.faults.take(target)
                passed_on = ("timeout_after_store", "unknown_after_store", "unfilled") + (
                    ("duplicate",) if target == "place" else ("not_visible",) if target == "query" else ())
                if fault is not None and fault.kind not in passed_on:
                    return self._recorded(venue, method, path, self._fault_reply(fault, venue), fault.kind)
                if fault is not None and fault.kind == "not_visible" and path in (BYBIT_REALTIME, BYBIT_HISTORY):
                    result = {"category": "linear", "list": [], "nextPageCursor": ""}
                elif fault is not None and fault.kind == "not_visible" and path == BINANCE_ORDER:
                    raise _Refusal(-2013, "Order does not exist.", 400)
                else:
                    result = self._route(venue, method, path, params, fault)
                reply = self._ok(venue, result)
            except _Refusal as refusal:
                reply = self._error(venue, refusal)
            if fault is not None and fault.kind == "timeout_after_store":
                reply = TradingReply(0, b"", hang_up=True)
            elif fault is not None and fault.kind == "unknown_after_store":
                reply = (self._error(venue, _Refusal(10016, "Internal server error.")) if venue == "bybit"
                         else self._error(venue, _Refusal(-1000, BINANCE_UNKNOWN, 503)))
            return self._recorded(venue, method, path, reply, fault.kind if fault else None)

    def _route(self, venue: str, method: str, path: str, params: dict[str, str], fault: TradingFault | None):
        routes = {
            ("POST", BYBIT_CREATE): self._bybit_create,
            ("POST", BYBIT_CANCEL): self._bybit_cancel,
            ("GET", BYBIT_REALTIME): lambda p, f: self._bybit_orders(p, history=False),
            ("GET", BYBIT_HISTORY): lambda p, f: self._bybit_orders(p, history=True),
            ("GET", BYBIT_POSITIONS): lambda p, f: self._bybit_positions(p),
            ("GET", BYBIT_WALLET): lambda p, f: self._bybit_wallet(p),
            ("POST", BINANCE_ORDER): self._binance_create,
            ("DELETE", BINANCE_ORDER): lambda p, f: self._binance_cancel(p),
            ("GET", BINANCE_ORDER): lambda p, f: _binance_order(self._binance_find(p)),
            ("GET", BINANCE_TRADES): lambda p, f: self._binance_trades(p),
            ("GET", BINANCE_POSITIONS): lambda p, f: self._binance_positions(p),
            ("GET", BINANCE_BALANCE): lambda p, f: self._binance_balance(),
        }
        route = routes.get((method, path))
        if route is None:
            raise _Refusal(10001 if venue == "bybit" else -1020, "This operation is not supported.", 404)
        return route(params, fault)

    # ---------------------------------------------------------------- authentication

    def _bybit_auth(self, method: str, query: str, headers: dict[str, str], body: str) -> dict[str, str]:
        key, stamp, sign = (headers.get(f"x-bapi-{h}") for h in ("api-key", "timestamp", "sign"))
        window = headers.get("x-bapi-recv-window") or "5000"
        if not key or not stamp or not sign:
            raise _Refusal(10003, "API key is invalid.", 401)
        secret = self.keys["bybit"].get(key)
        if secret is None:
            raise _Refusal(10003, "API key is invalid.")
        server = self._now_ms()
        try:
            stamp_ms, window_ms = int(stamp), int(window)
        except ValueError:
            raise _Refusal(10002, "invalid request, please check your server timestamp or recv_window param") from None
        if not server - window_ms <= stamp_ms < server + 1000:
            raise _Refusal(10002, f"invalid request, please check your server timestamp or recv_window param. "
                                  f"req_timestamp[{stamp_ms}],server_timestamp[{server}],recv_window[{window_ms}]")
        payload = query if method == "GET" else body
        origin = f"{stamp}{key}{window}{payload}"
        expected = hmac.new(secret.encode(), origin.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, sign.lower()):
            raise _Refusal(10004, f"error sign! origin_string[{origin}]")
        if method == "GET":
            return dict(parse_qsl(query, keep_blank_values=True))
        try:
            params = json.loads(body) if body else {}
        except ValueError:
            raise _Refusal(10001, "params error: the body is not JSON") from None
        if not isinstance(params, dict):
            raise _Refusal(10001, "params error: the body is not a JSON object")
        return params

    def _binance_auth(self, query: str, headers: dict[str, str], body: str) -> dict[str, str]:
        key = headers.get("x-mbx-apikey")
        if not key:
            raise _Refusal(-2014, "API-key format invalid.", 401)
        secret = self.keys["binance"].get(key)
        if secret is None:
            raise _Refusal(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        query_rest, query_sig = _split_signature(query)
        body_rest, body_sig = _split_signature(body)
        signature = query_sig or body_sig
        if not signature:
            raise _Refusal(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.", 400)
        if signature is _NOT_LAST:
            raise _Refusal(-1022, "Signature for this request is not valid.", 400)
        expected = hmac.new(secret.encode(), (query_rest + body_rest).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise _Refusal(-1022, "Signature for this request is not valid.", 400)
        params = {**dict(parse_qsl(body_rest, keep_blank_values=True)),
                  **dict(parse_qsl(query_rest, keep_blank_values=True))}
        try:
            stamp = int(params["timestamp"])
            window = int(params.get("recvWindow") or 5000)
        except (KeyError, ValueError):
            raise _Refusal(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
                           400) from None
        server = self._now_ms()
        if stamp >= server + 1000:
            raise _Refusal(-1021, "Timestamp for this request was 1000ms ahead of the server's time.", 400)
        if server - stamp > window:
            raise _Refusal(-1021, "Timestamp for this request is outside of the recvWindow.", 400)
        return params

    # ---------------------------------------------------------------- placing, shared

    def _place(self, venue: str, symbol: str, side: str, quantity: Decimal, client_id: str, reduce_only: bool,
               fault: TradingFault | None) -> FakeOrder:
        account = self.accounts[venue]
        bybit = venue == "bybit"
        price = self.price(symbol)
        if price is None:
            raise _Refusal(10001 if bybit else -2010, f"fake exchange has no price for {symbol} at {self.market.now}",
                           400 if not bybit else 200)
        prices = {s: self.price(s) for s in account.positions}
        delta = quantity if side == "buy" else -quantity
        refusal = account.check(symbol, delta, reduce_only, price, self.taker_fee[venue], prices)
        if refusal == "reduce_only":
            raise (_Refusal(110017, "Reduce-only rule not satisfied") if bybit
                   else _Refusal(-2022, "ReduceOnly Order is rejected.", 400))
        if refusal == "margin":
            raise (_Refusal(110007, "ab not enough for new order") if bybit
                   else _Refusal(-2019, "Margin is insufficient.", 400))
        now = self._now_ms()
        account.next_id += 1
        order = FakeOrder(venue, account.next_id, client_id, symbol, side, quantity, reduce_only, "NEW", now, now)
        account.orders.append(order)
        if fault is None or fault.kind != "unfilled":
            account.fill(order, price, self.taker_fee[venue], now)
        return order

    def _quantity(self, venue: str, symbol: str, text) -> Decimal:
        bybit = venue == "bybit"
        try:
            quantity = Decimal(str(text))
        except (InvalidOperation, ValueError):
            raise (_Refusal(10001, "params error: qty invalid") if bybit else
                   _Refusal(-1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.",
                            400)) from None
        rules = self.rules_for(symbol)
        if not quantity.is_finite() or quantity <= 0:
            raise _Refusal(10001, "params error: qty invalid") if bybit else _Refusal(
                -4003, "Quantity less than or equal to zero.", 400)
        if quantity < rules.min_qty:
            raise _Refusal(10001, "The number of contracts exceeds minimum limit allowed") if bybit else _Refusal(
                -4004, "Quantity less than min quantity.", 400)
        if quantity > rules.max_market_qty:
            raise _Refusal(10001, "The number of contracts exceeds maximum limit allowed") if bybit else _Refusal(
                -4005, "Quantity greater than max quantity.", 400)
        if (quantity - rules.min_qty) % rules.qty_step:
            raise _Refusal(10001, "params error: qty is not a multiple of qtyStep") if bybit else _Refusal(
                -1111, "Precision is over the maximum defined for this asset.", 400)
        return quantity

    # ---------------------------------------------------------------- Bybit

    def _bybit_create(self, params: dict, fault: TradingFault | None) -> dict:
        symbol = self._bybit_symbol(params)
        side = {"Buy": "buy", "Sell": "sell"}.get(params.get("side"))
        if side is None:
            raise _Refusal(10001, "params error: side invalid")
        if params.get("orderType") != "Market":
            raise _Refusal(10001, "params error: the fake exchange takes Market orders only")
        quantity = self._quantity("bybit", symbol, params.get("qty"))
        link_id = str(params.get("orderLinkId") or f"fake-{self.accounts['bybit'].next_id + 1}")
        if not BYBIT_LINK_ID.fullmatch(link_id):
            raise _Refusal(10001, "params error: orderLinkId invalid")
        if any(o.client_id == link_id for o in self.accounts["bybit"].orders) or (fault and fault.kind == "duplicate"):
            raise _Refusal(110072, "OrderLinkedID is duplicate")
        order = self._place("bybit", symbol, side, quantity, link_id, params.get("reduceOnly") is True, fault)
        return {"orderId": str(order.order_id), "orderLinkId": order.client_id}

    def _bybit_cancel(self, params: dict, fault: TradingFault | None) -> dict:
        symbol = self._bybit_symbol(params)
        order = next((o for o in reversed(self.accounts["bybit"].orders) if o.symbol == symbol and o.status in OPEN
                      and (o.client_id == params.get("orderLinkId") or str(o.order_id) == params.get("orderId"))),
                     None)
        if order is None:
            raise _Refusal(110001, "Order does not exist.")
        order.status, order.updated_ms = "CANCELED", self._now_ms()
        return {"orderId": str(order.order_id), "orderLinkId": order.client_id}

    def _bybit_orders(self, params: dict, *, history: bool) -> dict:
        category = params.get("category")
        if category != "linear":
            raise _Refusal(10001, "params error: category only support linear in the fake exchange")
        if not history and not (params.get("symbol") or params.get("settleCoin") or params.get("baseCoin")):
            raise _Refusal(10001, "params error: symbol, baseCoin or settleCoin is required")
        closed = history or params.get("openOnly") in ("1", "2")
        selected = [o for o in reversed(self.accounts["bybit"].orders)
                    if (o.status not in OPEN) == closed
                    and params.get("symbol") in (None, "", o.symbol)
                    and params.get("orderLinkId") in (None, "", o.client_id)
                    and params.get("orderId") in (None, "", str(o.order_id))]
        limit = min(50, max(1, int(params.get("limit") or 20)))
        return {"category": "linear", "list": [_bybit_order(o) for o in selected[:limit]], "nextPageCursor": ""}

    def _bybit_positions(self, params: dict) -> dict:
        if params.get("category") != "linear":
            raise _Refusal(10001, "params error: category only support linear in the fake exchange")
        symbol = params.get("symbol")
        if not symbol and not params.get("settleCoin"):
            raise _Refusal(10001, "params error: symbol or settleCoin is required")
        account = self.accounts["bybit"]
        symbols = [symbol] if symbol else sorted(account.positions)
        rows = []
        for s in symbols:
            quantity, entry = account.positions.get(s, (Decimal(0), 0.0))
            price = self.price(s)
            rows.append({"positionIdx": 0, "symbol": s, "side": "" if not quantity else "Buy" if quantity > 0 else
                         "Sell", "size": _text(abs(quantity)), "avgPrice": _money(entry),
                         "markPrice": _money(price or entry), "leverage": _money(account.leverage),
                         "positionValue": _money(abs(float(quantity)) * entry),
                         "unrealisedPnl": _money(account.unrealised(s, price)), "tradeMode": 0})
        return {"category": "linear", "list": rows, "nextPageCursor": ""}

    def _bybit_wallet(self, params: dict) -> dict:
        if params.get("accountType") != "UNIFIED":
            raise _Refusal(10001, "accountType only support UNIFIED.")
        account = self.accounts["bybit"]
        equity, initial = account.margin({s: self.price(s) for s in account.positions})
        unrealised = equity - account.wallet
        coin = {"coin": "USDT", "equity": _money(equity), "walletBalance": _money(account.wallet),
                "unrealisedPnl": _money(unrealised), "totalPositionIM": _money(initial), "usdValue": _money(equity)}
        return {"list": [{"accountType": "UNIFIED", "totalEquity": _money(equity),
                          "totalWalletBalance": _money(account.wallet), "totalMarginBalance": _money(equity),
                          "totalAvailableBalance": _money(max(0.0, equity - initial)),
                          "totalPerpUPL": _money(unrealised), "totalInitialMargin": _money(initial),
                          "coin": [coin]}]}

    def _bybit_symbol(self, params: dict) -> str:
        if params.get("category") != "linear":
            raise _Refusal(10001, "params error: category only support linear in the fake exchange")
        symbol = str(params.get("symbol") or "")
        if symbol not in self.market.data:
            raise _Refusal(10001, "params error: symbol invalid")
        return symbol

    # ---------------------------------------------------------------- Binance

    def _binance_create(self, params: dict, fault: TradingFault | None) -> dict:
        symbol = self._binance_symbol(params)
        side = {"BUY": "buy", "SELL": "sell"}.get(params.get("side", ""))
        if side is None:
            raise _Refusal(-1117, "Invalid side.", 400)
        if params.get("type") != "MARKET":
            raise _Refusal(-1116, "Invalid orderType (the fake exchange takes MARKET orders only).", 400)
        quantity = self._quantity("binance", symbol, params.get("quantity"))
        client_id = params.get("newClientOrderId") or f"fake{self.accounts['binance'].next_id + 1}"
        if not BINANCE_CLIENT_ID.fullmatch(client_id):
            raise _Refusal(-4015, "Client order id is not valid.", 400)
        reduce_only = params.get("reduceOnly", "false")
        if reduce_only not in ("true", "false"):
            raise _Refusal(-4062, "Invalid or improper reduceOnly value.", 400)
        account = self.accounts["binance"]
        if any(o.client_id == client_id and o.status in OPEN for o in account.orders) or (
                fault and fault.kind == "duplicate"):
            raise _Refusal(-4116, "ClientOrderId is duplicated.", 400)
        order = self._place("binance", symbol, side, quantity, client_id, reduce_only == "true", fault)
        if params.get("newOrderRespType", "ACK") == "ACK":
            return {**_binance_order(order), "status": "NEW", "executedQty": "0", "cumQuote": "0", "avgPrice": "0.00"}
        return _binance_order(order)

    def _binance_find(self, params: dict) -> FakeOrder:
        symbol = self._binance_symbol(params)
        client_id, order_id = params.get("origClientOrderId"), params.get("orderId")
        if not client_id and not order_id:
            raise _Refusal(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
                           400)
        for order in reversed(self.accounts["binance"].orders):  # the newest order with a reused id
            if order.symbol == symbol and (order.client_id == client_id or str(order.order_id) == order_id):
                return order
        raise _Refusal(-2013, "Order does not exist.", 400)

    def _binance_cancel(self, params: dict) -> dict:
        try:
            order = self._binance_find(params)
        except _Refusal:
            raise _Refusal(-2011, "Unknown order sent.", 400) from None
        if order.status not in OPEN:
            raise _Refusal(-2011, "Unknown order sent.", 400)
        order.status, order.updated_ms = "CANCELED", self._now_ms()
        return _binance_order(order)

    def _binance_trades(self, params: dict) -> list:
        symbol = self._binance_symbol(params)
        order_id = params.get("orderId")
        rows = []
        for o in self.accounts["binance"].orders:
            if o.symbol == symbol and o.filled and order_id in (None, str(o.order_id)):
                rows.append({"buyer": o.side == "buy", "commission": _money(o.fee), "commissionAsset": "USDT",
                             "id": o.order_id * 10, "maker": False, "orderId": o.order_id,
                             "price": _money(o.average_price), "qty": _text(o.filled),
                             "quoteQty": _money(float(o.filled) * o.average_price),
                             "realizedPnl": _money(o.realized_pnl), "side": o.side.upper(), "positionSide": "BOTH",
                             "symbol": symbol, "time": o.updated_ms})
        return rows

    def _binance_positions(self, params: dict) -> list:
        account = self.accounts["binance"]
        symbols = [self._binance_symbol(params)] if params.get("symbol") else sorted(self.market.data)
        rows = []
        for s in symbols:
            quantity, entry = account.positions.get(s, (Decimal(0), 0.0))
            price = self.price(s)
            rows.append({"symbol": s, "positionAmt": _text(quantity), "entryPrice": _money(entry),
                         "breakEvenPrice": _money(entry), "markPrice": _money(price or 0.0),
                         "unRealizedProfit": _money(account.unrealised(s, price)), "liquidationPrice": "0",
                         "leverage": str(int(account.leverage)), "maxNotionalValue": "250000", "marginType": "cross",
                         "isolatedMargin": "0.00000000", "isAutoAddMargin": "false", "positionSide": "BOTH",
                         "notional": _money(float(quantity) * (price or entry)), "isolatedWallet": "0",
                         "updateTime": self._now_ms()})
        return rows

    def _binance_balance(self) -> list:
        account = self.accounts["binance"]
        equity, initial = account.margin({s: self.price(s) for s in account.positions})
        available = max(0.0, equity - initial)
        return [{"accountAlias": "FakeAlias", "asset": "USDT", "balance": _money(account.wallet),
                 "crossWalletBalance": _money(account.wallet), "crossUnPnl": _money(equity - account.wallet),
                 "availableBalance": _money(available), "maxWithdrawAmount": _money(available),
                 "marginAvailable": True, "updateTime": self._now_ms()}]

    def _binance_symbol(self, params: dict) -> str:
        symbol = params.get("symbol")
        if not symbol:
            raise _Refusal(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.", 400)
        if symbol not in self.market.data:
            raise _Refusal(-1121, "Invalid symbol.", 400)
        return symbol

    # ---------------------------------------------------------------- replies

    def _now_ms(self) -> int:
        return to_ms(self.server_time())

    def _ok(self, venue: str, result) -> TradingReply:
        if venue == "bybit":
            return _json({"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": self._now_ms()})
        return _json(result)

    def _error(self, venue: str, refusal: _Refusal) -> TradingReply:
        if venue == "bybit" and refusal.status == 401:
            return TradingReply(401, b"", content_type="text/plain")
        if venue == "bybit":
            return _json({"retCode": refusal.code, "retMsg": refusal.message, "result": {}, "retExtInfo": {},
                          "time": self._now_ms()}, refusal.status)
        return _json({"code": refusal.code, "msg": refusal.message}, refusal.status)

    def _fault_reply(self, fault: TradingFault, venue: str) -> TradingReply:
        kind = fault.kind
        if kind == "duplicate":  # reaches here only for requests that are not placements
            kind = "503"
        reset_ms = self._now_ms() + int(fault.reset * 1000)
        bybit_limit = {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": str(reset_ms)}
        if kind == "10006" and venue == "bybit":
            reply = self._error(venue, _Refusal(10006, "Too many visits!"))
            reply.headers.update(bybit_limit)
            return reply
        if kind in ("429", "10006"):
            if venue == "bybit":
                return TradingReply(429, b"Too Many Requests", {**bybit_limit, "Retry-After": f"{fault.retry_after:g}"},
                                    "text/plain")
            reply = self._error(venue, _Refusal(-1015, "Too many new orders; current limit is 1200 orders per MINUTE.",
                                                429))
            reply.headers.update({"Retry-After": f"{fault.retry_after:g}", "X-MBX-ORDER-COUNT-1M": "1201"})
            return reply
        if kind == "502":
            return TradingReply(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", {}, "text/html")
        text = "Service Unavailable." if kind == "503" else "Internal Server Error"
        return TradingReply(int(kind), text.encode(), {}, "text/plain")

    def _recorded(self, venue: str, method: str, path: str, reply: TradingReply, fault: str | None) -> TradingReply:
        code = 0
        if reply.body and reply.content_type == "application/json":
            payload = json.loads(reply.body)
            code = payload.get("retCode", payload.get("code", 0)) if isinstance(payload, dict) else 0
        self._log.append(TradingRequest(venue, method, path, reply.status, int(code or 0), fault))
        return reply


def serve_trading(handler, method: str) -> None:
    """Answer an order-endpoint request on the fake exchange's ``BaseHTTPRequestHandler``."""
    fake = handler.server.fake
    url = urlsplit(handler.path)
    length = int(handler.headers.get("Content-Length") or 0)
    body = handler.rfile.read(length) if length > 0 else b""
    headers = {name.lower(): value for name, value in handler.headers.items()}
    try:
        reply = fake.trading.handle(method, url.path, url.query, headers, body)
    except Exception as exc:  # a bug in the fake: answer 500 and keep it for the test to see
        fake.errors.append(f"{type(exc).__name__}: {exc}")
        reply = TradingReply(500, f"fake exchange error: {type(exc).__name__}: {exc}".encode(), {}, "text/plain")
    if reply.hang_up:
        handler.close_connection = True
        return
    try:
        handler.send_response(reply.status)
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Type", reply.content_type)
        handler.send_header("Content-Length", str(len(reply.body)))
        handler.end_headers()
        handler.wfile.write(reply.body)
    except OSError:
        handler.close_connection = True


_NOT_LAST = "\x00not-last"


def _split_signature(text: str) -> tuple[str, str | None]:
    """``text`` without its ``signature`` parameter, and the signature (``_NOT_LAST`` when it is not last)."""
    if not text:
        return "", None
    parts = text.split("&")
    found = [i for i, part in enumerate(parts) if part.startswith("signature=")]
    if not found:
        return text, None
    if found[-1] != len(parts) - 1 or len(found) > 1:
        return text, _NOT_LAST
    return "&".join(parts[:-1]), parts[-1][len("signature="):]


def _bybit_order(o: FakeOrder) -> dict:
    leaves = o.quantity - o.filled if o.status in OPEN else Decimal(0)
    return {"orderId": str(o.order_id), "orderLinkId": o.client_id, "symbol": o.symbol, "price": "0",
            "qty": _text(o.quantity), "side": "Buy" if o.side == "buy" else "Sell", "isLeverage": "",
            "positionIdx": 0, "orderStatus": BYBIT_STATUS[o.status],
            "cancelType": "CancelByUser" if o.status == "CANCELED" else "UNKNOWN",
            "rejectReason": "EC_NoError", "avgPrice": _money(o.average_price) if o.filled else "",
            "leavesQty": _text(leaves), "leavesValue": "0", "cumExecQty": _text(o.filled),
            "cumExecValue": _money(float(o.filled) * o.average_price), "cumExecFee": _money(o.fee),
            "timeInForce": "IOC", "orderType": "Market", "reduceOnly": o.reduce_only,
            "createdTime": str(o.created_ms), "updatedTime": str(o.updated_ms)}


def _binance_order(o: FakeOrder) -> dict:
    return {"orderId": o.order_id, "symbol": o.symbol, "status": o.status, "clientOrderId": o.client_id,
            "price": "0", "avgPrice": _money(o.average_price), "origQty": _text(o.quantity),
            "executedQty": _text(o.filled), "cumQty": _text(o.filled),
            "cumQuote": _money(float(o.filled) * o.average_price), "timeInForce": "GTC", "type": "MARKET",
            "reduceOnly": o.reduce_only, "closePosition": False, "side": o.side.upper(), "positionSide": "BOTH",
            "stopPrice": "0", "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": "MARKET",
            "priceMatch": "NONE", "selfTradePreventionMode": "NONE", "goodTillDate": 0, "time": o.created_ms,
            "updateTime": o.updated_ms}


def _json(payload, status: int = 200) -> TradingReply:
    return TradingReply(status, json.dumps(payload, separators=(",", ":")).encode())


def _text(value: Decimal) -> str:
    return format(Decimal(value).normalize(), "f")


def _money(value: float | None) -> str:
    return f"{float(value or 0.0):.8f}"
