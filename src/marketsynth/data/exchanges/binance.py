"""Binance USDⓈ-M futures public market data: ``GET /fapi/v1/klines`` and ``/fapi/v1/exchangeInfo``.

Binance limits request *weight* per IP per minute (2400; klines cost 1-10 by ``limit``) and reports what
is used in ``X-MBX-USED-WEIGHT-1M``. We pace ourselves under 75 % of the budget and, when the header says the
minute's budget is nearly spent (other processes share the IP), wait for the next minute instead of earning
a 429 or a 418 ban.
"""

from __future__ import annotations

from typing import Any

import httpx

from marketsynth.data.exchanges.base import ExchangeSource, date_header_ms
from marketsynth.data.exchanges.http import RateLimiter, unexpected_status
from marketsynth.errors import ExchangeError, TransientExchangeError
from marketsynth.timeframes import Timeframe

KLINE_PATH = "/fapi/v1/klines"
EXCHANGE_INFO_PATH = "/fapi/v1/exchangeInfo"
FUNDING_PATH = "/fapi/v1/fundingRate"
TIME_PATH = "/fapi/v1/time"
FUNDING_LIMIT = 1000
FUNDING_REQUESTS_PER_5_MIN = 500  # fundingRate's own budget, shared with /fapi/v1/fundingInfo
TESTNET_BASE_URL = "https://testnet.binancefuture.com"

WEIGHT_PER_MINUTE = 2400
EXCHANGE_INFO_WEIGHT = 1
PACE_SHARE = 0.75  # steady pace: this share of the budget per minute...
BURST_SHARE = 0.15  # ...plus a burst of this share; together under the budget in any minute
HEADROOM = 0.10  # wait for the next minute when less than this share is left

TRANSIENT_CODES = {
    -1000,
    -1001,
    -1003,
    -1007,
    -1008,
}  # unknown, disconnected, too many requests, timeout, busy


def kline_weight(limit: int) -> int:
    """Request weight of ``GET /fapi/v1/klines`` for a given ``limit``."""
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


class BinanceSource(ExchangeSource):
    name = "binance"
    display_name = "Binance"
    max_limit = 1500
    funding_limit = FUNDING_LIMIT
    funding_newest_first = False
    oldest_first = True  # with startTime the oldest candles from there come first
    time_path = TIME_PATH
    default_base_url = "https://fapi.binance.com"
    default_requests_per_second = 10.0
    categories = ("linear",)

    @property
    def market_label(self) -> str:
        return "on USDⓈ-M futures"

    def _make_limiter(self, requests_per_second: float) -> RateLimiter:
        return RateLimiter(
            requests_per_second,
            weight_per_minute=WEIGHT_PER_MINUTE * PACE_SHARE,
            weight_burst=WEIGHT_PER_MINUTE * BURST_SHARE,
            clock=self._clock,
            sleep=self._sleep,
        )

    def _make_funding_limiter(self) -> RateLimiter:
        per_second = FUNDING_REQUESTS_PER_5_MIN * PACE_SHARE / 300
        return RateLimiter(per_second, burst=FUNDING_REQUESTS_PER_5_MIN * BURST_SHARE, clock=self._clock,
                           sleep=self._sleep)

    def _code_for(self, tf: Timeframe) -> str | None:
        return tf.binance

    def _kline_request(
        self, symbol: str, code: str, start_ms: int, end_ms: int, limit: int
    ) -> tuple[str, dict[str, Any], float]:
        params = {
            "symbol": symbol,
            "interval": code,
            "startTime": start_ms,
            "endTime": end_ms,
            "limit": limit,
        }
        return KLINE_PATH, params, kline_weight(limit)

    def _parse_klines(self, response: httpx.Response, symbol: str, code: str) -> tuple[list[list], int | None]:
        payload = self._checked(response, symbol=symbol, interval=code)
        if not isinstance(payload, list) or not all(isinstance(r, list) and len(r) >= 6 for r in payload):
            raise TransientExchangeError("binance sent a kline answer that is not a list of rows")
        return payload, date_header_ms(response)

    def _funding_request(self, symbol: str, start_ms: int, end_ms: int, limit: int) -> tuple[str, dict, float]:
        params = {"symbol": symbol, "startTime": start_ms, "endTime": end_ms, "limit": min(limit, FUNDING_LIMIT)}
        return FUNDING_PATH, params, 1.0

    def _parse_funding(self, response: httpx.Response, symbol: str) -> tuple[list[tuple[int, str]], int | None]:
        payload = self._checked(response, symbol=symbol)
        if not isinstance(payload, list):
            raise TransientExchangeError("binance sent a fundingRate answer that is not a list")
        try:
            rows = [(int(item["fundingTime"]), item["fundingRate"]) for item in payload]
        except (KeyError, TypeError, ValueError):
            raise TransientExchangeError("binance sent funding rates without fundingTime/fundingRate") from None
        return rows, date_header_ms(response)

    def _parse_time(self, response: httpx.Response) -> int | None:
        payload = self._checked(response)
        server = payload.get("serverTime") if isinstance(payload, dict) else None
        return int(server) if isinstance(server, int | float) else date_header_ms(response)

    def _fetch_symbols(self) -> list[str]:
        payload = self._checked(self._get(EXCHANGE_INFO_PATH, {}, weight=EXCHANGE_INFO_WEIGHT))
        items = payload.get("symbols") if isinstance(payload, dict) else None
        if not isinstance(items, list):
            raise TransientExchangeError("binance sent an exchangeInfo answer without symbols")
        return [item["symbol"] for item in items if isinstance(item, dict) and "symbol" in item]

    def _observe(self, response: httpx.Response) -> None:
        used = response.headers.get("X-MBX-USED-WEIGHT-1M")
        try:
            used_weight = float(used) if used is not None else None
        except ValueError:
            used_weight = None
        if used_weight is not None and used_weight >= WEIGHT_PER_MINUTE * (1 - HEADROOM):
            now = self._clock()
            self.limiter.pause_until((now // 60 + 1) * 60 + 0.5)  # the weight window is the calendar minute

    def _checked(self, response: httpx.Response, *, symbol: str | None = None, interval: str | None = None):
        """The JSON payload of a successful call, or the right error for Binance's ``{"code", "msg"}``."""
        if response.status_code != 200:
            try:
                payload = response.json()
            except ValueError:
                payload = None
            if not (isinstance(payload, dict) and "code" in payload):
                raise unexpected_status(response, exchange=self.name)
        else:
            payload = self._json(response)
            if not (isinstance(payload, dict) and "code" in payload):
                return payload
        code, message = payload.get("code"), str(payload.get("msg", ""))
        if code in TRANSIENT_CODES:
            raise TransientExchangeError(f"binance error {code}: {message}")
        if code == -1121 and symbol:
            raise self.unknown_symbol_error(symbol)
        if code == -1120 and interval:
            raise ExchangeError(f"Binance rejected interval '{interval}' ({message})")
        raise ExchangeError(
            f"Binance refused the request to {response.url.path} (HTTP {response.status_code}, code {code}: {message})"
        )
