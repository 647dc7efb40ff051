"""Bybit v5 public market data: ``GET /v5/market/kline`` and ``/v5/market/instruments-info``.

Bybit answers most errors with HTTP 200 and a non-zero ``retCode``; its klines come newest first, every field
a string. When ``X-Bapi-Limit-Status`` (requests left in the window) reaches 0 we wait for
``X-Bapi-Limit-Reset-Timestamp``.
"""

from __future__ import annotations

from typing import Any

import httpx

from marketsynth.data.exchanges.base import ExchangeSource, date_header_ms
from marketsynth.data.exchanges.http import RateLimiter, unexpected_status
from marketsynth.errors import ExchangeError, TransientExchangeError
from marketsynth.timeframes import Timeframe

KLINE_PATH = "/v5/market/kline"
INSTRUMENTS_PATH = "/v5/market/instruments-info"
TESTNET_BASE_URL = "https://api-testnet.bybit.com"

RATE_LIMITED = {10006, 10018}  # "Too many visits!", IP rate limit via retCode
SERVER_TROUBLE = {10000, 10016}  # "Server Timeout", "Internal server error"


class BybitSource(ExchangeSource):
    name = "bybit"
    display_name = "Bybit"
    max_limit = 1000
    default_base_url = "https://api.bybit.com"
    default_requests_per_second = 10.0
    categories = ("linear", "spot", "inverse")

    def _make_limiter(self, requests_per_second: float) -> RateLimiter:
        return RateLimiter(requests_per_second, clock=self._clock, sleep=self._sleep)

    def _code_for(self, tf: Timeframe) -> str | None:
        return tf.bybit

    def _kline_request(
        self, symbol: str, code: str, start_ms: int, end_ms: int, limit: int
    ) -> tuple[str, dict[str, Any], float]:
        params = {
            "category": self.category,
            "symbol": symbol,
            "interval": code,
            "start": start_ms,
            "end": end_ms,
            "limit": limit,
        }
        return KLINE_PATH, params, 1.0

    def _parse_klines(self, response: httpx.Response, symbol: str, code: str) -> tuple[list[list], int | None]:
        payload = self._checked(response, symbol=symbol, interval=code)
        result = payload.get("result")
        rows = result.get("list") if isinstance(result, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) >= 6 for r in rows):
            raise TransientExchangeError("bybit sent a kline answer without a proper result.list")
        server_ms = payload.get("time")
        return rows, int(server_ms) if isinstance(server_ms, int | float) else date_header_ms(response)

    def _fetch_symbols(self) -> list[str]:
        symbols: list[str] = []
        cursor = ""
        seen: set[str] = set()
        while True:
            params: dict[str, Any] = {"category": self.category, "limit": 1000}
            if cursor:
                params["cursor"] = cursor
            payload = self._checked(self._get(INSTRUMENTS_PATH, params))
            result = payload.get("result") or {}
            items = result.get("list")
            if not isinstance(items, list):
                raise TransientExchangeError("bybit sent an instruments answer without result.list")
            symbols += [item["symbol"] for item in items if isinstance(item, dict) and "symbol" in item]
            cursor = result.get("nextPageCursor") or ""
            if not cursor or cursor in seen:
                return symbols
            seen.add(cursor)

    def _observe(self, response: httpx.Response) -> None:
        remaining = _int_header(response, "X-Bapi-Limit-Status")
        reset_ms = _int_header(response, "X-Bapi-Limit-Reset-Timestamp")
        if remaining is not None and remaining <= 0 and reset_ms:
            self.limiter.pause_until(reset_ms / 1000.0)

    def _checked(self, response: httpx.Response, *, symbol: str | None = None, interval: str | None = None):
        """The JSON payload of a successful call, or the right error for Bybit's retCode."""
        if response.status_code != 200:
            raise unexpected_status(response, exchange=self.name)
        payload = self._json(response)
        if not isinstance(payload, dict) or "retCode" not in payload:
            raise TransientExchangeError("bybit sent a JSON answer without retCode")
        code, message = payload["retCode"], str(payload.get("retMsg", ""))
        if code == 0:
            return payload
        if code in RATE_LIMITED:
            reset_ms = _int_header(response, "X-Bapi-Limit-Reset-Timestamp")
            wait = max(0.0, reset_ms / 1000.0 - self._clock()) if reset_ms else None
            raise TransientExchangeError(f"bybit rate limited (retCode {code}: {message})", retry_after=wait)
        if code in SERVER_TROUBLE:
            raise TransientExchangeError(f"bybit server trouble (retCode {code}: {message})")
        lowered = message.lower()
        if symbol and "symbol" in lowered:
            raise self.unknown_symbol_error(symbol)
        if interval and ("period" in lowered or "interval" in lowered):
            raise ExchangeError(f"Bybit rejected interval '{interval}' ({message})")
        raise ExchangeError(f"Bybit refused the request to {response.url.path} (retCode {code}: {message})")


def _int_header(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name)
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None
