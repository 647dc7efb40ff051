"""The exchange source interface and the paging, limiting and retrying every exchange shares.

A subclass says how to ask for one page of klines and how to read the answer; this class walks the
requested range in forward windows of ``max_limit`` bars, keeps only closed candles in ``[start, end)`` and
yields one bars frame per page so a caller can store each page as it arrives (an interrupted backfill resumes
where it stopped).

One source may be shared by several threads (its rate budget is then shared too); sources for different
symbols may also be used side by side in different threads.
"""

from __future__ import annotations

import difflib
import email.utils
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pandas as pd

import marketsynth
from marketsynth.data.bars import bars_from_rows
from marketsynth.data.exchanges.http import (
    RateLimiter,
    RetryPolicy,
    http_status_error,
    json_body,
    transport_error,
)
from marketsynth.errors import ConfigError, ExchangeError
from marketsynth.timeframes import TIMEFRAMES, Timeframe, from_ms, parse_timeframe, to_ms, to_utc


class ExchangeSource(ABC):
    name: str  # "bybit" | "binance"
    display_name: str  # "Bybit" | "Binance", for messages
    max_limit: int  # most bars one kline request returns
    default_base_url: str
    default_requests_per_second: float = 10.0
    categories: tuple[str, ...] = ("linear",)

    def __init__(
        self,
        *,
        base_url: str | None = None,
        category: str = "linear",
        timeout: float = 10.0,
        max_attempts: int = 6,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        requests_per_second: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ):
        if category not in self.categories:
            raise ConfigError(f"{self.display_name} has no category '{category}'; use {' or '.join(self.categories)}")
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.category = category
        self.timeout = timeout
        self._sleep = sleep
        self._clock = clock
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            headers={"User-Agent": f"marketsynth/{marketsynth.__version__}", "Accept": "application/json"},
        )
        self.limiter = self._make_limiter(requests_per_second or self.default_requests_per_second)
        self.retry = RetryPolicy(max_attempts=max_attempts, backoff=backoff, max_backoff=max_backoff, sleep=sleep)
        self._symbols: list[str] | None = None
        self._symbols_lock = threading.Lock()

    # ---------------------------------------------------------------- public

    def fetch_bars(
        self,
        symbol: str,
        timeframe: Timeframe | str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        *,
        now: pd.Timestamp | None = None,
    ) -> Iterator[pd.DataFrame]:
        """Yield bars frames (ascending, one per request/page) covering open times in [start, end).

        Never yields a still-open candle (open time + timeframe > ``now``; ``now`` defaults to the clock).
        Pages are contiguous, non-overlapping windows, so each can be stored as it arrives. Arguments are
        checked before the first request, when this is called rather than when the iterator is first used.
        """
        tf = parse_timeframe(timeframe)
        code = self.interval_code(tf)
        symbol = normalize_symbol(symbol)
        start, end = to_utc(start), to_utc(end)
        now = pd.Timestamp(self._clock(), unit="s", tz="UTC") if now is None else to_utc(now)
        stop = min(end, tf.floor(now))  # the bar opening at floor(now) is still open
        return self._pages(symbol, tf, code, start, stop, now)

    def validate_symbol(self, symbol: str) -> None:
        """Raise ExchangeError (with a did-you-mean suggestion) unless the exchange lists ``symbol``."""
        symbol = normalize_symbol(symbol)
        if symbol not in set(self.list_symbols()):
            raise self.unknown_symbol_error(symbol)

    def list_symbols(self) -> list[str]:
        """Every symbol the exchange lists in this category (fetched once, then cached)."""
        with self._symbols_lock:
            if self._symbols is None:
                symbols = self.retry.call(self._fetch_symbols, what=f"{self.name} symbol list ({self.category})")
                self._symbols = sorted(set(symbols))
            return list(self._symbols)

    def interval_code(self, timeframe: Timeframe | str) -> str:
        """The exchange's spelling of ``timeframe``; ConfigError when the exchange has no such interval."""
        tf = parse_timeframe(timeframe)
        code = self._code_for(tf)
        if code is None:
            names = ", ".join(t.name for t in TIMEFRAMES if self._code_for(t) is not None)
            raise ConfigError(f"{self.display_name} has no {tf.name} candles; use one of {names}")
        return code

    def close(self) -> None:
        self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def market_label(self) -> str:
        """Where symbols are listed, for messages: "in category 'linear'"."""
        return f"in category '{self.category}'"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, category={self.category!r})"

    # ---------------------------------------------------------------- paging

    def _pages(
        self,
        symbol: str,
        tf: Timeframe,
        code: str,
        start: pd.Timestamp,
        stop: pd.Timestamp,
        now: pd.Timestamp,
    ) -> Iterator[pd.DataFrame]:
        window_start = start
        while window_start < stop:
            window_end = min(window_start + tf.delta * self.max_limit, stop)
            rows, server_ms = self._klines_page(symbol, tf, code, to_ms(window_start), to_ms(window_end) - 1)
            frame = bars_from_rows(rows, source=f"{self.display_name} {symbol} {tf.name} klines")
            keep = (frame["time"] >= window_start) & (frame["time"] < window_end)
            # The exchange's clock has the last word: a candle still open there is never kept, even when
            # our clock runs ahead of it.
            closed_by = now if server_ms is None else min(now, from_ms(server_ms))
            keep &= (frame["time"] + tf.delta) <= closed_by if tf.seconds else frame["time"] < tf.floor(closed_by)
            frame = frame.loc[keep].reset_index(drop=True)
            if len(frame):
                yield frame
            if closed_by < window_end:  # nothing later has closed on the exchange yet
                return
            window_start = window_end

    def _klines_page(
        self, symbol: str, tf: Timeframe, code: str, start_ms: int, end_ms: int
    ) -> tuple[list[list], int | None]:
        path, params, weight = self._kline_request(symbol, code, start_ms, end_ms, self.max_limit)
        first, last = pd.Timestamp(start_ms, unit="ms"), pd.Timestamp(end_ms, unit="ms")
        what = f"{self.name} klines {symbol} {tf.name} {first:%Y-%m-%d %H:%M}..{last:%Y-%m-%d %H:%M}"

        def attempt() -> tuple[list[list], int | None]:
            response = self._get(path, params, weight=weight)
            return self._parse_klines(response, symbol, code)

        return self.retry.call(attempt, what=what)

    # ---------------------------------------------------------------- one HTTP attempt

    def _get(self, path: str, params: dict[str, Any], *, weight: float = 1.0) -> httpx.Response:
        """One GET within the rate budget; rate limits, 5xx and I/O trouble raise a retryable error."""
        self.limiter.acquire(weight)
        try:
            response = self._client.get(path, params=params)
        except httpx.TransportError as exc:
            raise transport_error(exc, exchange=self.name, url=self.base_url, timeout=self.timeout) from None
        self._observe(response)
        error = http_status_error(response, exchange=self.name)
        if error is not None:
            retry_after = getattr(error, "retry_after", None)
            if retry_after:
                self.limiter.pause_for(retry_after)
            raise error
        return response

    def _json(self, response: httpx.Response):
        return json_body(response, exchange=self.name)

    def unknown_symbol_error(self, symbol: str) -> ExchangeError:
        """The one-line error for a symbol the exchange does not list, with a suggestion when one is close."""
        message = f"{self.display_name} does not list symbol '{symbol}' {self.market_label}"
        try:
            known = self.list_symbols()
        except ExchangeError:
            known = []
        match = closest_symbol(symbol, known)
        return ExchangeError(f"{message} (did you mean {match}?)" if match else message)

    # ---------------------------------------------------------------- exchange specifics

    @abstractmethod
    def _make_limiter(self, requests_per_second: float) -> RateLimiter: ...

    @abstractmethod
    def _code_for(self, tf: Timeframe) -> str | None:
        """The exchange's interval code, None when it has no such interval."""

    @abstractmethod
    def _kline_request(
        self, symbol: str, code: str, start_ms: int, end_ms: int, limit: int
    ) -> tuple[str, dict[str, Any], float]:
        """(path, query parameters, request weight) for klines with open times in [start_ms, end_ms]."""

    @abstractmethod
    def _parse_klines(self, response: httpx.Response, symbol: str, code: str) -> tuple[list[list], int | None]:
        """Rows ``[open_time_ms, open, high, low, close, volume, ...]`` in any order and the exchange's time
        (ms, None when unknown), or the right error."""

    @abstractmethod
    def _fetch_symbols(self) -> list[str]:
        """One attempt at listing every symbol in this category."""

    def _observe(self, response: httpx.Response) -> None:  # noqa: B027 - optional hook
        """Read the exchange's rate-limit headers (subclasses pause the limiter when the budget runs out)."""


def date_header_ms(response: httpx.Response) -> int | None:
    """The server's clock from the HTTP ``Date`` header (whole seconds, so never ahead of it), in ms."""
    value = response.headers.get("Date")
    if not value:
        return None
    try:
        return int(email.utils.parsedate_to_datetime(value).timestamp() * 1000)
    except (TypeError, ValueError):
        return None


def normalize_symbol(symbol: str) -> str:
    text = str(symbol).strip().upper()
    if not text:
        raise ConfigError("empty symbol; pass one such as BTCUSDT")
    return text


def closest_symbol(symbol: str, known: list[str]) -> str | None:
    """The listed symbol most like ``symbol``: the shortest listed one it starts (USDT pairs first), else the
    closest spelling."""
    if not known:
        return None
    extensions = sorted((s for s in known if s.startswith(symbol)), key=lambda s: (len(s), not s.endswith("USDT"), s))
    if extensions:
        return extensions[0]
    matches = difflib.get_close_matches(symbol, known, n=1, cutoff=0.6)
    return matches[0] if matches else None
