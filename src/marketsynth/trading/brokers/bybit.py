"""Bybit v5 orders for linear perpetuals: ``/v5/order/create``, ``/v5/order/cancel``, ``/v5/order/realtime``,
``/v5/order/history``, ``/v5/position/list``, ``/v5/account/wallet-balance``.

Signing (Bybit's "Integration Guidance"): headers ``X-BAPI-API-KEY``, ``X-BAPI-TIMESTAMP`` (ms),
``X-BAPI-RECV-WINDOW`` and ``X-BAPI-SIGN`` = hex HMAC-SHA256 with the secret of
``timestamp + api_key + recv_window + payload``, the payload being the exact query string of a GET or the exact
JSON body of a POST. The exchange takes a request when ``server_time - recv_window <= timestamp <
server_time + 1000`` and answers retCode 10002 otherwise.

Bybit keeps every ``orderLinkId`` it has seen: sending one again, even after the order filled, is refused with
110072 — so a resend can never open a second order, and ``place`` answers such a refusal with a lookup.
Orders are looked up in ``/v5/order/realtime`` (open ones) and then ``/v5/order/history`` (finished ones).
"""

from __future__ import annotations

import hashlib
import hmac
import json
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

CREATE, CANCEL = "/v5/order/create", "/v5/order/cancel"
REALTIME, HISTORY = "/v5/order/realtime", "/v5/order/history"
POSITIONS, WALLET = "/v5/position/list", "/v5/account/wallet-balance"
INSTRUMENTS, TIME = "/v5/market/instruments-info", "/v5/market/time"

STATUSES = {
    "Created": "pending",
    "New": "submitted",
    "Untriggered": "submitted",
    "Triggered": "submitted",
    "PartiallyFilled": "partially_filled",
    "Filled": "filled",
    "Cancelled": "cancelled",
    "PartiallyFilledCanceled": "cancelled",
    "Deactivated": "cancelled",
    "Rejected": "rejected",
}
RATE_LIMITED = {10006, 10018}  # too many visits (per UID), out of the IP's frequency limit
SERVER_TROUBLE = {10000, 10016}  # server timeout, internal error / service restarting: outcome unknown
AUTH = {10003, 10004, 10005, 10007, 10009, 10010, 33004}  # key invalid, sign, permission, auth, IP, expired
NO_SUCH_ORDER = {110001, 110008, 110010}  # does not exist, already finished or cancelled


def bybit_signature(secret: str, timestamp_ms: int | str, api_key: str, recv_window_ms: int | str,
                    payload: str) -> str:
    """``X-BAPI-SIGN``: hex HMAC-SHA256 of timestamp + api_key + recv_window + (query string | JSON body)."""
    text = f"{timestamp_ms}{api_key}{recv_window_ms}{payload}"
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


class BybitBroker(ExchangeBroker):
    name = "bybit"
    display_name = "Bybit"
    default_base_url = "https://api.bybit.com"
    time_path = TIME

    def __init__(self, credentials, *, category: str = "linear", account_type: str = "UNIFIED", **options):
        super().__init__(credentials, **options)
        self.category = category
        self.account_type = account_type

    # ---------------------------------------------------------------- Broker

    def positions(self) -> dict[str, Position]:
        positions: dict[str, Position] = {}
        cursor, seen = "", set()
        while True:
            params: dict[str, Any] = {"category": self.category, "settleCoin": self.settle_asset, "limit": 200}
            if cursor:
                params["cursor"] = cursor
            result = self._result(self._read(lambda p=params: self._call("GET", POSITIONS, p), what="bybit positions"))
            for item in _items(result):
                size = number(item.get("size"))
                if not size:
                    continue
                quantity = -size if item.get("side") == "Sell" else size
                positions[item["symbol"]] = Position(item["symbol"], quantity, number(item.get("avgPrice")),
                                                     number(item.get("unrealisedPnl")), number(item.get("leverage")))
            cursor = result.get("nextPageCursor") or ""
            if not cursor or cursor in seen:
                return positions
            seen.add(cursor)

    def balance(self) -> Balance:
        params = {"accountType": self.account_type}
        result = self._result(self._read(lambda: self._call("GET", WALLET, params), what="bybit wallet balance"))
        accounts = _items(result)
        if not accounts:
            raise ExchangeError(f"Bybit has no {self.account_type} wallet for this key; check account_type")
        account = accounts[0]
        return Balance(number(account.get("totalEquity")), number(account.get("totalAvailableBalance")))

    # ---------------------------------------------------------------- orders

    def _create(self, order: OrderRequest, quantity: str) -> OrderState:
        params = {
            "category": self.category,
            "symbol": order.symbol,
            "side": "Buy" if order.side == "buy" else "Sell",
            "orderType": "Market",
            "qty": quantity,
            "orderLinkId": order.client_id,
            "reduceOnly": bool(order.reduce_only),
        }
        payload = self._call("POST", CREATE, params)
        result = payload.get("result") if isinstance(payload.get("result"), dict) else {}
        exchange_id = str(result.get("orderId") or "") or None
        try:  # acknowledged: from here on the order exists, whatever the lookup says
            found = self.lookup(order.symbol, order.client_id)
        except ExchangeError:
            found = None
        if found is not None:
            return found
        when = payload.get("time")
        return OrderState(order.client_id, exchange_id, "submitted", 0.0, None, None,
                          from_ms(int(when)) if isinstance(when, int) and when > 0 else None)

    def _cancel(self, symbol: str, client_id: str) -> None:
        self._call("POST", CANCEL, {"category": self.category, "symbol": symbol, "orderLinkId": client_id})

    def _lookup(self, symbol: str, client_id: str) -> OrderState | None:
        for path, extra in ((REALTIME, {"openOnly": 0}), (HISTORY, {})):
            params = {"category": self.category, "symbol": symbol, "orderLinkId": client_id, **extra}
            for item in _items(self._result(self._call("GET", path, params))):
                if item.get("orderLinkId") == client_id:
                    return self._state(item)
        return None

    def _state(self, item: dict) -> OrderState:
        status = STATUSES.get(str(item.get("orderStatus")))
        if status is None:
            raise ExchangeError(f"Bybit order {item.get('orderLinkId')} has unknown status {item.get('orderStatus')!r}")
        filled = number(item.get("cumExecQty"))
        average = number(item.get("avgPrice"), None)
        updated = number(item.get("updatedTime") or item.get("createdTime"), None)
        return OrderState(
            client_id=str(item.get("orderLinkId")),
            exchange_id=str(item.get("orderId")) or None,
            status=status,
            filled_quantity=filled,
            average_price=average if filled and average else None,
            fee=number(item.get("cumExecFee"), None),
            time=from_ms(int(updated)) if updated else None,
        )

    def _instrument(self, symbol: str) -> Instrument:
        params = {"category": self.category, "symbol": symbol}
        for item in _items(self._result(self._call("GET", INSTRUMENTS, params, signed=False))):
            if item.get("symbol") != symbol:
                continue
            lot, price = item.get("lotSizeFilter") or {}, item.get("priceFilter") or {}
            if not lot.get("qtyStep") or not lot.get("minOrderQty"):
                raise ExchangeError(f"Bybit sent no lot size for {symbol}")
            return Instrument.from_text(symbol, lot["qtyStep"], lot["minOrderQty"],
                                        lot.get("maxMktOrderQty") or lot.get("maxOrderQty") or 0,
                                        price.get("tickSize") or 0)
        raise ExchangeError(f"Bybit does not list symbol '{symbol}' in category '{self.category}'")

    # ---------------------------------------------------------------- HTTP

    def _prepare(self, method: str, path: str, params: dict[str, Any], timestamp_ms: int | None):
        headers: dict[str, str] = {}
        if method == "GET":
            payload = urlencode(params)
            url, body = (f"{path}?{payload}" if payload else path), None
        else:
            payload = json.dumps(params, separators=(",", ":"))
            url, body = path, payload.encode()
            headers["Content-Type"] = "application/json"
        if timestamp_ms is not None:
            key, window = self.credentials.api_key, str(self.recv_window_ms)
            headers.update({
                "X-BAPI-API-KEY": key,
                "X-BAPI-TIMESTAMP": str(timestamp_ms),
                "X-BAPI-RECV-WINDOW": window,
                "X-BAPI-SIGN": bybit_signature(self.credentials.reveal_secret(), timestamp_ms, key, window, payload),
            })
        return url, headers, body

    def _answer(self, response: httpx.Response, method: str, path: str, params: dict[str, Any]) -> Any:
        trouble = self._http_trouble(response, response.text)
        if trouble is not None:
            raise trouble
        if response.status_code == 401:
            raise ExchangeError("Bybit refused the API credentials (HTTP 401); check MARKETSYNTH_BYBIT_API_KEY and "
                                "MARKETSYNTH_BYBIT_API_SECRET")
        if response.status_code != 200:
            raise ExchangeError(f"Bybit answered HTTP {response.status_code} to {path}; check the base URL")
        payload = self._decode(response)
        if not isinstance(payload, dict) or "retCode" not in payload:
            raise Uncertain(f"Bybit answered {path} without a retCode")
        code = int(payload["retCode"])
        if code == 0:
            return payload
        message = self.credentials.redact(" ".join(str(payload.get("retMsg", "")).split()))
        what = f"retCode {code}: {message}"
        if code == 10002:
            raise ClockRejected(f"Bybit refused the request's timestamp ({what})")
        if code in RATE_LIMITED:
            raise Refused(f"Bybit rate limit ({what})", retry_after=self._reset_wait(response))
        if code in SERVER_TROUBLE:
            raise Uncertain(f"Bybit server trouble ({what})")
        if code == 110072:
            raise DuplicateId(f"Bybit already has orderLinkId {params.get('orderLinkId')} ({what})")
        if code in AUTH:
            raise ExchangeError(f"Bybit refused the API key ({what}); check MARKETSYNTH_BYBIT_API_KEY and "
                                "MARKETSYNTH_BYBIT_API_SECRET, the key's permissions and its IP whitelist")
        if path == CANCEL and code in NO_SUCH_ORDER:
            raise NotFound(f"Bybit has no open order {params.get('orderLinkId')} ({what})")
        if path == CREATE:
            raise order_rejected("Bybit", code, message, str(params.get("orderLinkId")))
        raise ExchangeError(f"Bybit refused {method} {path} ({what})")

    def _observe(self, response: httpx.Response) -> None:
        if _int_header(response, "X-Bapi-Limit-Status") == 0:
            wait = self._reset_wait(response)
            if wait:
                self.limiter.pause_for(wait)

    def _reset_wait(self, response: httpx.Response) -> float | None:
        """Seconds until ``X-Bapi-Limit-Reset-Timestamp`` (an exchange-clock time), by our offset."""
        reset_ms = _int_header(response, "X-Bapi-Limit-Reset-Timestamp")
        if not reset_ms:
            return None
        now_ms = int(self._clock() * 1000) + int(self.clock_offset_ms or 0)
        return max(0.0, (reset_ms - now_ms) / 1000)

    def _parse_time(self, payload: Any) -> int:
        result = payload.get("result") if isinstance(payload, dict) else None
        try:
            if isinstance(result, dict) and result.get("timeNano"):
                return int(result["timeNano"]) // 1_000_000
            if isinstance(result, dict) and result.get("timeSecond"):
                return int(result["timeSecond"]) * 1000
            return int(payload["time"])
        except (KeyError, TypeError, ValueError):
            raise TransientExchangeError("Bybit sent a time answer without timeNano/timeSecond") from None

    @staticmethod
    def _result(payload: Any) -> dict:
        result = payload.get("result") if isinstance(payload, dict) else None
        if not isinstance(result, dict):
            raise TransientExchangeError("Bybit sent an answer without a result object")
        return result


def _items(result: dict) -> list[dict]:
    items = result.get("list")
    if not isinstance(items, list):
        raise TransientExchangeError("Bybit sent an answer without result.list")
    return [item for item in items if isinstance(item, dict)]


def _int_header(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name)
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None
