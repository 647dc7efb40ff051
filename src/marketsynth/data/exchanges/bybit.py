"""Bybit v5 public market data: ``GET /v5/market/kline``, ``/v5/market/funding/history``, ``/v5/market/time``
and ``/v5/market/instruments-info``.

Bybit answers most errors with HTTP 200 and a non-zero ``retCode``; its klines come newest first, every field
a string. Funding history takes ``startTime`` and ``endTime`` together (``startTime`` alone is an error) and
answers at most 200 rates, newest first, so it is paged backwards from the end. When ``X-Bapi-Limit-Status``
(requests left in the window) reaches 0 we wait for ``X-Bapi-Limit-Reset-Timestamp``.
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
FUNDING_PATH = "/v5/market/funding/history"
TIME_PATH = "/v5/market/time"
FUNDING_LIMIT = 200
TESTNET_BASE_URL = "https://api-testnet.bybit.com"

RATE_LIMITED = {10006, 10018}  # "Too many visits!", IP rate limit via retCode
SERVER_TROUBLE = {10000, 10016}  # "Server Timeout", "Internal server error"


class BybitSource(ExchangeSource):
    name = "bybit"
    display_name = "Bybit"
    max_limit = 1000
    funding_limit = FUNDING_LIMIT
    funding_newest_first = True
    oldest_first = False  # klines come newest first, also when a start is given
    time_path = TIME_PATH
    default_base_url = "https://api.bybit.com"
    default_requests_per_second = 10.0
    categories = ("linear", "spot", "inverse")
    funding_categories = ("linear", "inverse")

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
        return rows, _server_ms(payload, response)

    def _funding_request(self, symbol: str, start_ms: int, end_ms: int, limit: int) -> tuple[str, dict, float]:
        params = {"category": self.category, "symbol": symbol, "startTime": start_ms, "endTime": end_ms,
                  "limit": min(limit, FUNDING_LIMIT)}
        return FUNDING_PATH, params, 1.0

    def _parse_funding(self, response: httpx.Response, symbol: str) -> tuple[list[tuple[int, str]], int | None]:
        payload = self._checked(response, symbol=symbol)
        result = payload.get("result")
        items = result.get("list") if isinstance(result, dict) else None
        if not isinstance(items, list):
            raise TransientExchangeError("bybit sent a funding answer without a proper result.list")
        try:
            rows = [(int(item["fundingRateTimestamp"]), item["fundingRate"]) for item in items]
        except (KeyError, TypeError, ValueError):
            raise TransientExchangeError("bybit sent funding rates without fundingRateTimestamp/fundingRate") from None
        return rows, _server_ms(payload, response)

    def _parse_time(self, response: httpx.Response) -> int | None:
        payload = self._checked(response)
        result = payload.get("result") if isinstance(payload.get("result"), dict) else {}
        try:
            if result.get("timeNano"):
                return int(result["timeNano"]) // 1_000_000
            if result.get("timeSecond"):
                return int(result["timeSecond"]) * 1000
        except (TypeError, ValueError):
            pass
        return _server_ms(payload, response)

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


def _server_ms(payload: dict, response: httpx.Response) -> int | None:
    """Bybit's clock: the answer's ``time`` field when it is a number (even 0: the clock check judges it), else
    the ``Date`` header."""
    server_ms = payload.get("time")
    if isinstance(server_ms, int | float) and not isinstance(server_ms, bool):
        return int(server_ms)
    return date_header_ms(response)


def _int_header(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name)
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None
