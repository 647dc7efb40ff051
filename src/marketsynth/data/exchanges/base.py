"""The exchange source interface and the paging, limiting and retrying every exchange shares.

A subclass says how to ask for one page of klines (or funding rates) and how to read the answer; this class
walks the requested range in forward windows of ``max_limit`` bars, keeps only closed candles in ``[start, end)``
and yields one page per request so a caller can store each page as it arrives (an interrupted backfill resumes
where it stopped). Each kline page also says which stretch the answer covered, so a caller records as missing
only what the exchange answered without (``KlinePage``); which clock decides what has closed is
``clock.ClockCheck``'s business.

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
from dataclasses import dataclass
from typing import Any

import httpx
import pandas as pd

import marketsynth
from marketsynth.data.bars import bars_from_rows, empty_bars
from marketsynth.data.exchanges.clock import ClockCheck, ClockReading
from marketsynth.data.exchanges.http import (
    RateLimiter,
    RetryPolicy,
    http_status_error,
    json_body,
    transport_error,
)
from marketsynth.data.funding import funding_from_rows
from marketsynth.errors import ConfigError, ExchangeError
from marketsynth.timeframes import TIMEFRAMES, Timeframe, from_ms, parse_timeframe, to_ms, to_utc


@dataclass(frozen=True)
class KlinePage:
    """One answer about ``[start, covered)``: every closed candle the exchange has there is in ``bars``.

    ``returned`` is every open time the exchange sent for the window, kept or not (a candle still open is
    returned but not kept). A time in ``[start, covered)`` that is in neither was answered as absent: only such
    times may become known gaps. ``covered`` may stop short of the window: at the clock's closed time, or, when
    only our clock decided, at the newest candle the answer held. ``searched`` marks the empty stretch a
    first-candle search skipped.
    """

    bars: pd.DataFrame
    start: pd.Timestamp
    covered: pd.Timestamp
    returned: pd.DatetimeIndex
    clock: ClockReading
    searched: bool = False


@dataclass(frozen=True)
class FundingPage:
    """Funding rates (a funding frame) from one answer, and the clock reading that came with it."""

    rates: pd.DataFrame
    clock: ClockReading


class ExchangeSource(ABC):
    name: str  # "bybit" | "binance"
    display_name: str  # "Bybit" | "Binance", for messages
    max_limit: int  # most bars one kline request returns
    funding_limit: int  # most funding rates one request returns
    funding_newest_first: bool  # pages of funding history walk backwards from the end
    oldest_first: bool  # a kline request with a start answers from the first candle at or after it
    time_path: str  # the exchange's server-time endpoint
    default_base_url: str
    default_requests_per_second: float = 10.0
    categories: tuple[str, ...] = ("linear",)
    funding_categories: tuple[str, ...] = ("linear",)

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
        transport: httpx.BaseTransport | None = None,
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
            transport=transport,
        )
        self.limiter = self._make_limiter(requests_per_second or self.default_requests_per_second)
        self.funding_limiter = self._make_funding_limiter()
        self.retry = RetryPolicy(max_attempts=max_attempts, backoff=backoff, max_backoff=max_backoff, sleep=sleep)
        self.clock = ClockCheck(self.name, self.time_path, self.server_time_ms)
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

        Never yields a still-open candle (see ``marketsynth.data.exchanges.clock`` for which clock decides;
        ``now`` is ours and defaults to the source's clock). Pages are contiguous, non-overlapping windows, so each
        can be stored as it arrives. Arguments are checked when this is called, not when the iterator is first used.
        """
        pages = self.fetch_pages(symbol, timeframe, start, end, now=now)
        return (page.bars for page in pages if len(page.bars))

    def fetch_pages(
        self,
        symbol: str,
        timeframe: Timeframe | str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        *,
        now: pd.Timestamp | None = None,
    ) -> Iterator[KlinePage]:
        """Like ``fetch_bars``, with what each answer covered (``KlinePage``), empty answers included.

        A stretch without candles (before listing, a long outage) is not walked window by window: after an
        empty window the first candle that follows is looked up (one request where the exchange answers from
        the first candle, a binary search where it does not) and paging resumes there.
        """
        tf = parse_timeframe(timeframe)
        code = self.interval_code(tf)
        symbol = normalize_symbol(symbol)
        start, end = to_utc(start), to_utc(end)
        now = self._now(now)
        stop = min(end, tf.floor(now))  # the bar opening at floor(now) is still open
        return self._pages(symbol, tf, code, start, stop, now)

    def fetch_funding(self, symbol: str, start, end, *, now: pd.Timestamp | None = None) -> Iterator[FundingPage]:
        """Yield the funding rates with funding time in [start, end) (and up to ``now``), one page per request.

        Pages come newest first where the exchange pages backwards (Bybit), oldest first otherwise (Binance);
        each page's frame is ascending. ConfigError for a category without funding (Bybit spot).
        """
        if self.category not in self.funding_categories:
            raise ConfigError(f"{self.display_name} {self.category} has no funding rates (perpetuals only); "
                              f"use --category {' or '.join(self.funding_categories)}")
        symbol = normalize_symbol(symbol)
        start, end = to_utc(start), to_utc(end)
        now = self._now(now)
        return self._funding_pages(symbol, start, min(end, now), now)

    def server_time_ms(self) -> int | None:
        """The exchange's clock from its time endpoint, in ms (retried like any request)."""
        return self.retry.call(lambda: self._parse_time(self._get(self.time_path, {})),
                               what=f"{self.name} server time")

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

    # ---------------------------------------------------------------- paging klines

    def _now(self, now) -> pd.Timestamp:
        return pd.Timestamp(self._clock(), unit="s", tz="UTC") if now is None else to_utc(now)

    def _pages(
        self,
        symbol: str,
        tf: Timeframe,
        code: str,
        start: pd.Timestamp,
        stop: pd.Timestamp,
        now: pd.Timestamp,
    ) -> Iterator[KlinePage]:
        window_start = start
        while window_start < stop:
            window_end = min(window_start + tf.delta * self.max_limit, stop)
            rows, server_ms = self._klines_page(symbol, tf, code, window_start, window_end, self.max_limit)
            clock = self.clock.reading(now, server_ms)
            frame = bars_from_rows(rows, source=f"{self.display_name} {symbol} {tf.name} klines")
            frame = frame.loc[(frame["time"] >= window_start) & (frame["time"] < window_end)]
            closed_end = tf.floor(clock.closed_by)  # candles opening before this have closed
            kept = frame.loc[frame["time"] < closed_end].reset_index(drop=True)
            covered = min(window_end, closed_end)
            if not clock.trusted:  # an empty tail may not exist on the exchange yet: claim only up to its newest
                covered = min(covered, kept["time"].iloc[-1] + tf.delta) if len(kept) else window_start
            yield KlinePage(kept, window_start, max(covered, window_start), pd.DatetimeIndex(frame["time"]), clock)
            if closed_end < window_end:  # nothing later has closed yet
                return
            window_start = window_end
            if frame.empty and tf.seconds and stop - window_end > tf.delta * self.max_limit:  # pages to skip
                hi = min(stop, closed_end)
                resume = self._skip_empty(symbol, tf, code, window_end, hi)
                if resume is None:  # no candle at all until hi
                    if clock.trusted:
                        yield KlinePage(empty_bars(), window_end, hi, _NO_TIMES, clock, searched=True)
                    return
                if resume > window_end:
                    yield KlinePage(empty_bars(), window_end, resume, _NO_TIMES, clock, searched=True)
                window_start = resume

    def _skip_empty(self, symbol: str, tf: Timeframe, code: str, lo: pd.Timestamp, hi: pd.Timestamp):
        """A time at or before the first candle in [lo, hi) with nothing before it since ``lo`` (None: no candle
        in [lo, hi) at all), found in one request where the exchange answers oldest first, else by bisection."""
        first = self._probe(symbol, tf, code, lo, hi)  # the oldest or the newest candle in [lo, hi)
        if first is None or self.oldest_first:
            return first
        upper = first + tf.delta  # a candle opens in [lo, upper)
        window = tf.delta * self.max_limit
        while upper - lo > window:
            middle = lo + tf.delta * ((upper - lo) // tf.delta // 2)
            newest = self._probe(symbol, tf, code, lo, middle)
            if newest is None:
                lo = middle
            else:
                upper = newest + tf.delta
        return lo

    def _probe(self, symbol: str, tf: Timeframe, code: str, lo: pd.Timestamp, hi: pd.Timestamp):
        """The open time of the one candle a ``limit=1`` request for [lo, hi) returns, None when it returns none."""
        rows, _ = self._klines_page(symbol, tf, code, lo, hi, 1)
        times = [from_ms(int(float(row[0]))) for row in rows]
        times = [t for t in times if lo <= t < hi]
        return (min(times) if self.oldest_first else max(times)) if times else None

    def _klines_page(
        self, symbol: str, tf: Timeframe, code: str, start: pd.Timestamp, end: pd.Timestamp, limit: int
    ) -> tuple[list[list], int | None]:
        """Klines with open times in [start, end): the rows and the exchange's time (ms) from the answer."""
        path, params, weight = self._kline_request(symbol, code, to_ms(start), to_ms(end) - 1, limit)
        last = end - pd.Timedelta(milliseconds=1)
        what = f"{self.name} klines {symbol} {tf.name} {start:%Y-%m-%d %H:%M}..{last:%Y-%m-%d %H:%M}"

        def attempt() -> tuple[list[list], int | None]:
            response = self._get(path, params, weight=weight)
            return self._parse_klines(response, symbol, code)

        return self.retry.call(attempt, what=what)

    # ---------------------------------------------------------------- paging funding rates

    def _funding_pages(self, symbol: str, start: pd.Timestamp, stop: pd.Timestamp,
                       now: pd.Timestamp) -> Iterator[FundingPage]:
        lo_ms, hi_ms = to_ms(start), to_ms(stop) - 1
        while lo_ms <= hi_ms:
            path, params, weight = self._funding_request(symbol, lo_ms, hi_ms, self.funding_limit)
            what = f"{self.name} funding {symbol} {from_ms(lo_ms):%Y-%m-%d %H:%M}..{from_ms(hi_ms):%Y-%m-%d %H:%M}"

            def attempt(path=path, params=params, weight=weight):
                response = self._get(path, params, weight=weight, limiter=self.funding_limiter)
                return self._parse_funding(response, symbol)

            rows, server_ms = self.retry.call(attempt, what=what)
            times = [int(float(t)) for t, _ in rows]
            inside = [(t, rate) for t, rate in rows if lo_ms <= int(float(t)) <= hi_ms]
            rates = funding_from_rows(inside, source=f"{self.display_name} {symbol} funding")
            yield FundingPage(rates, self.clock.reading(now, server_ms))
            if len(rows) < self.funding_limit:
                return
            if self.funding_newest_first:
                hi_ms, before = min(times) - 1, hi_ms
                if hi_ms >= before:
                    return
            else:
                lo_ms, before = max(times) + 1, lo_ms
                if lo_ms <= before:
                    return

    # ---------------------------------------------------------------- one HTTP attempt

    def _get(self, path: str, params: dict[str, Any], *, weight: float = 1.0,
             limiter: RateLimiter | None = None) -> httpx.Response:
        """One GET within the rate budget (and ``limiter``'s, for endpoints with their own limit); rate limits,
        5xx and I/O trouble raise a retryable error."""
        if limiter is not None:
            limiter.acquire(1.0)
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

    def _make_funding_limiter(self) -> RateLimiter | None:
        """A limiter for the funding endpoint's own budget, None when it shares the general one."""
        return None

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
    def _funding_request(self, symbol: str, start_ms: int, end_ms: int, limit: int) -> tuple[str, dict, float]:
        """(path, query parameters, request weight) for funding rates with funding times in [start_ms, end_ms]."""

    @abstractmethod
    def _parse_funding(self, response: httpx.Response, symbol: str) -> tuple[list[tuple[int, str]], int | None]:
        """Rows ``(funding_time_ms, rate)`` in any order and the exchange's time (ms), or the right error."""

    @abstractmethod
    def _parse_time(self, response: httpx.Response) -> int | None:
        """The exchange's time (ms) from its time endpoint's answer."""

    @abstractmethod
    def _fetch_symbols(self) -> list[str]:
        """One attempt at listing every symbol in this category."""

    def _observe(self, response: httpx.Response) -> None:  # noqa: B027 - optional hook
        """Read the exchange's rate-limit headers (subclasses pause the limiter when the budget runs out)."""


_NO_TIMES = pd.DatetimeIndex([], tz="UTC").as_unit("us")


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
