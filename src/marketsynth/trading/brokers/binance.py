"""Binance USDⓈ-M futures orders: ``/fapi/v1/order`` (POST to place, DELETE to cancel, GET to look up),
``/fapi/v1/userTrades`` (the fee), ``/fapi/v2/positionRisk``, ``/fapi/v2/balance``.

Signing (Binance's "SIGNED (TRADE and USER_DATA) Endpoint Security"): the key goes in ``X-MBX-APIKEY``;
``signature`` = hex HMAC-SHA256 with the secret of *totalParams* (the query string concatenated with the request
body), sent as the last parameter, with ``timestamp`` (ms) and ``recvWindow``. The exchange takes a request when
``timestamp < serverTime + 1000`` and ``serverTime - timestamp <= recvWindow``, else −1021. GET and DELETE
send everything in the query string, POST in a form body.

Binance keeps ``newClientOrderId`` unique only among *open* orders: once an order filled, the same id opens a
new one. So ``place`` looks an id up before its first send (an order that exists is returned, not sent again),
and after an uncertain send it waits out the request's receive window before deciding from a lookup.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import httpx

from marketsynth.errors import ExchangeError, TransientExchangeError
from marketsynth.timeframes import from_ms
from marketsynth.trading.brokers.base import Balance, Instrument, OrderRequest, OrderState, Position
from marketsynth.trading.brokers.exchange import (
    ClockRejected,
    DuplicateId,
    ExchangeBroker,
    NotFound,
    Refused,
    Uncertain,
    number,
    order_rejected,
)

log = logging.getLogger(__name__)

ORDER, TRADES = "/fapi/v1/order", "/fapi/v1/userTrades"
POSITIONS, BALANCE = "/fapi/v2/positionRisk", "/fapi/v2/balance"
EXCHANGE_INFO, TIME = "/fapi/v1/exchangeInfo", "/fapi/v1/time"

STATUSES = {
    "NEW": "submitted",
    "PARTIALLY_FILLED": "partially_filled",
    "FILLED": "filled",
    "CANCELED": "cancelled",
    "EXPIRED": "cancelled",
    "EXPIRED_IN_MATCH": "cancelled",
    "REJECTED": "rejected",
}
RATE_LIMITED = {-1003, -1015}  # too many requests, too many new orders
UNKNOWN_OUTCOME = {-1000, -1001, -1006, -1007, -1008}  # unknown, disconnected, unexpected, timeout, overloaded
AUTH = {-1002, -1022, -2014, -2015, -2017, -4056}  # unauthorized, signature, key format, key/IP/permission
NO_SUCH_ORDER = {-2011, -2013}  # cancel: unknown order; query: order does not exist


def binance_signature(secret: str, total_params: str) -> str:
    """``signature``: hex HMAC-SHA256 of totalParams (query string + request body)."""
    return hmac.new(secret.encode(), total_params.encode(), hashlib.sha256).hexdigest()


class BinanceBroker(ExchangeBroker):
    name = "binance"
    display_name = "Binance"
    default_base_url = "https://fapi.binance.com"
    time_path = TIME
    lookup_before_send = True

    # ---------------------------------------------------------------- Broker

    def positions(self) -> dict[str, Position]:
        rows = self._read(lambda: self._call("GET", POSITIONS, {}), what="binance positions")
        if not isinstance(rows, list):
            raise ExchangeError("Binance sent a positionRisk answer that is not a list")
        positions = {}
        for row in rows:
            amount = number(row.get("positionAmt")) if isinstance(row, dict) else 0.0
            if amount:
                positions[row["symbol"]] = Position(row["symbol"], amount, number(row.get("entryPrice")),
                                                    number(row.get("unRealizedProfit")), number(row.get("leverage")))
        return positions

    def balance(self) -> Balance:
        rows = self._read(lambda: self._call("GET", BALANCE, {}), what="binance balance")
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and row.get("asset") == self.settle_asset:
                equity = number(row.get("balance")) + number(row.get("crossUnPnl"))
                return Balance(equity, number(row.get("availableBalance")))
        raise ExchangeError(f"Binance shows no {self.settle_asset} balance for this key")

    # ---------------------------------------------------------------- orders

    def _create(self, order: OrderRequest, quantity: str) -> OrderState:
        params: dict[str, Any] = {
            "symbol": order.symbol,
            "side": order.side.upper(),
            "type": "MARKET",
            "quantity": quantity,
            "newClientOrderId": order.client_id,
            "newOrderRespType": "RESULT",
        }
        if order.reduce_only:
            params["reduceOnly"] = "true"
        payload = self._call("POST", ORDER, params)
        try:  # acknowledged: from here on the order exists, and place must not raise
            state = self._state(payload)
        except ExchangeError as exc:
            log.warning("binance order %s: acknowledged, but the answer was unreadable (%s)", order.client_id, exc)
            found = None
            with contextlib.suppress(ExchangeError):
                found = self.lookup(order.symbol, order.client_id)
            return found or OrderState(order.client_id, None, "submitted", 0.0, None, None, None)
        return self._with_fee(order.symbol, state)

    def _cancel(self, symbol: str, client_id: str) -> None:
        self._call("DELETE", ORDER, {"symbol": symbol, "origClientOrderId": client_id})

    def _lookup(self, symbol: str, client_id: str) -> OrderState | None:
        try:
            payload = self._call("GET", ORDER, {"symbol": symbol, "origClientOrderId": client_id})
        except NotFound:
            return None
        return self._with_fee(symbol, self._state(payload))

    def _with_fee(self, symbol: str, state: OrderState) -> OrderState:
        """``state`` with its fee summed from the order's trades (None when they cannot be read)."""
        if not state.filled_quantity or not state.exchange_id:
            return replace(state, fee=0.0 if not state.filled_quantity else None)
        params = {"symbol": symbol, "orderId": state.exchange_id}
        try:
            trades = self._read(lambda: self._call("GET", TRADES, params), what=f"binance trades {state.client_id}")
        except ExchangeError as exc:
            log.warning("binance order %s: fee unknown (%s)", state.client_id, exc)
            return state
        mine = [t for t in trades if isinstance(t, dict) and str(t.get("orderId")) == state.exchange_id]
        if not mine or any(t.get("commissionAsset") != self.settle_asset for t in mine):
            return state  # not settled yet, or paid in another asset (BNB): not a USDT amount
        return replace(state, fee=sum(abs(number(t.get("commission"))) for t in mine))

    def _state(self, payload: Any) -> OrderState:
        if not isinstance(payload, dict) or "clientOrderId" not in payload:
            raise ExchangeError("Binance sent an order answer without clientOrderId")
        status = STATUSES.get(str(payload.get("status")))
        if status is None:
            raise ExchangeError(f"Binance order {payload['clientOrderId']} has unknown status "
                                f"{payload.get('status')!r}")
        filled = number(payload.get("executedQty"))
        average = number(payload.get("avgPrice"), None)
        updated = payload.get("updateTime") or payload.get("time")
        return OrderState(
            client_id=str(payload["clientOrderId"]),
            exchange_id=str(payload["orderId"]) if payload.get("orderId") is not None else None,
            status=status,
            filled_quantity=filled,
            average_price=average if filled and average else None,
            fee=None,
            time=from_ms(int(updated)) if isinstance(updated, int) and updated > 0 else None,
        )

    def _instrument(self, symbol: str) -> Instrument:
        info = self._call("GET", EXCHANGE_INFO, {}, signed=False)
        for item in info.get("symbols", []) if isinstance(info, dict) else []:
            if not isinstance(item, dict) or item.get("symbol") != symbol:
                continue
            filters = {f.get("filterType"): f for f in item.get("filters", []) if isinstance(f, dict)}
            lot = filters.get("MARKET_LOT_SIZE") or filters.get("LOT_SIZE")
            if not lot or not lot.get("stepSize"):
                raise ExchangeError(f"Binance sent no lot size for {symbol}")
            return Instrument.from_text(symbol, lot["stepSize"], lot.get("minQty") or 0, lot.get("maxQty") or 0,
                                        (filters.get("PRICE_FILTER") or {}).get("tickSize") or 0)
        raise ExchangeError(f"Binance does not list symbol '{symbol}' on USDⓈ-M futures")

    # ---------------------------------------------------------------- HTTP

    def _prepare(self, method: str, path: str, params: dict[str, Any], timestamp_ms: int | None):
        fields = {k: ("true" if v is True else "false" if v is False else str(v)) for k, v in params.items()}
        headers: dict[str, str] = {}
        if timestamp_ms is not None:
            fields.update(recvWindow=str(self.recv_window_ms), timestamp=str(timestamp_ms))
        text = urlencode(fields)
        if timestamp_ms is not None:
            text += "&signature=" + binance_signature(self.credentials.reveal_secret(), text)
            headers["X-MBX-APIKEY"] = self.credentials.api_key
        if method == "POST":
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            return path, headers, text.encode()
        return (f"{path}?{text}" if text else path), headers, None

    def _answer(self, response: httpx.Response, method: str, path: str, params: dict[str, Any]) -> Any:
        trouble = self._http_trouble(response, response.text)
        if trouble is not None:
            raise trouble
        if response.status_code == 200:
            payload = self._decode(response)  # an unreadable 200 to an order may still be an order
        else:
            try:
                payload = response.json()
            except ValueError:
                payload = None
        error = isinstance(payload, dict) and "code" in payload and payload.get("code") not in (0, 200)
        if response.status_code == 200 and not error:
            return payload
        if not error:
            raise ExchangeError(f"Binance answered HTTP {response.status_code} to {path}; check the base URL")
        code = int(payload["code"])
        message = self.credentials.redact(" ".join(str(payload.get("msg", "")).split()))
        what = f"HTTP {response.status_code}, code {code}: {message}"
        cid = params.get("newClientOrderId") or params.get("origClientOrderId")
        if code == -1021:
            raise ClockRejected(f"Binance refused the request's timestamp ({what})")
        if code in RATE_LIMITED:
            raise Refused(f"Binance rate limit ({what})")
        if code in UNKNOWN_OUTCOME:
            raise Uncertain(f"Binance could not say what happened ({what})")
        if code == -4116:
            raise DuplicateId(f"Binance has an open order with id {cid} ({what})")
        if code in NO_SUCH_ORDER and path == ORDER and method in ("GET", "DELETE"):
            raise NotFound(f"Binance has no order {cid} ({what})")
        if code in AUTH:
            raise ExchangeError(f"Binance refused the API key or signature ({what}); check "
                                "MARKETSYNTH_BINANCE_API_KEY and MARKETSYNTH_BINANCE_API_SECRET, the key's permissions "
                                "and its IP whitelist")
        if path == ORDER and method == "POST":
            raise order_rejected("Binance", code, message, str(cid))
        if code == -1121:
            raise ExchangeError(f"Binance does not list symbol '{params.get('symbol')}' on USDⓈ-M futures")
        raise ExchangeError(f"Binance refused {method} {path} ({what})")

    def _parse_time(self, payload: Any) -> int:
        server = payload.get("serverTime") if isinstance(payload, dict) else None
        if not isinstance(server, int):
            raise TransientExchangeError("Binance sent a time answer without serverTime")
        return server
