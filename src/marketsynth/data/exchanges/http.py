"""What every exchange source shares: a thread-safe rate limiter and a bounded retry policy.

The limiter keeps us under the exchange's limits before it has to tell us (token buckets for requests
and, for Binance, request weight); ``pause_until`` lets the exchange's own signals (rate-limit headers,
``Retry-After``) hold back every thread that uses the same source. The retry policy retries only
``TransientExchangeError``, with exponential backoff plus jitter, never shorter than what the exchange asked
for.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
import tenacity

from marketsynth.errors import ExchangeError, ExchangeUnreachableError, TransientExchangeError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: An exchange asking us to wait longer than this (e.g. a Binance IP ban) is reported, not waited out.
MAX_RETRY_AFTER = 300.0

UNREACHABLE_HINT = "check the network or --base-url, or import a CSV with 'marketsynth data import'"


class UnreachableError(TransientExchangeError):
    """The exchange could not be reached at all (DNS, refused connection...). Retried like any transient."""


@dataclass
class _Bucket:
    rate: float  # tokens per second
    capacity: float
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = max(self.updated, now)


class RateLimiter:
    """Token buckets for requests per second and (optionally) weight per minute, shared by threads.

    ``acquire`` reserves its tokens immediately (a bucket may go into debt) and then sleeps outside the lock,
    so concurrent callers are spaced out fairly instead of racing for the same refill.
    """

    def __init__(
        self,
        requests_per_second: float,
        *,
        burst: float | None = None,
        weight_per_minute: float | None = None,
        weight_burst: float | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        now = clock()
        capacity = burst if burst is not None else max(1.0, requests_per_second)
        self._requests = _Bucket(requests_per_second, capacity, capacity, now)
        self._weight: _Bucket | None = None
        if weight_per_minute:
            wcap = weight_burst if weight_burst is not None else weight_per_minute / 6
            self._weight = _Bucket(weight_per_minute / 60.0, wcap, wcap, now)
        self._paused_until = 0.0

    @property
    def requests_per_second(self) -> float:
        return self._requests.rate

    def acquire(self, weight: float = 1.0) -> float:
        """Wait until one request of ``weight`` may be sent; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            wait = max(0.0, self._paused_until - now)
            wait = max(wait, self._take(self._requests, 1.0, now))
            if self._weight is not None:
                wait = max(wait, self._take(self._weight, weight, now))
        if wait > 0:
            self._sleep(wait)
        return wait

    def pause_until(self, when: float) -> None:
        """Send nothing before ``when`` (the limiter's clock), e.g. until a rate-limit window resets."""
        with self._lock:
            self._paused_until = max(self._paused_until, when)

    def pause_for(self, seconds: float) -> None:
        self.pause_until(self._clock() + seconds)

    @staticmethod
    def _take(bucket: _Bucket, tokens: float, now: float) -> float:
        bucket.refill(now)
        bucket.tokens -= tokens
        return 0.0 if bucket.tokens >= 0 else -bucket.tokens / bucket.rate


class RetryPolicy:
    """Bounded retries with exponential backoff and jitter, honouring ``retry_after`` on the error."""

    def __init__(
        self,
        *,
        max_attempts: int = 6,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.on_retry: Callable[[str], None] | None = None  # told each retry in one line (progress rows)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): equal jitter, capped."""
        cap = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        delay = self._rng.uniform(cap / 2, cap)
        return max(delay, retry_after) if retry_after else delay

    def call(self, fn: Callable[[], T], *, what: str) -> T:
        """Run ``fn`` until it succeeds, raises a permanent error, or the attempts are spent.

        ``what`` names the operation for the final one-line error, e.g. ``"bybit klines BTCUSDT 1h"``.
        """
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(TransientExchangeError),
            sleep=self._sleep,
            before_sleep=lambda state: self._log_retry(state, what),
        )
        try:
            return retrying(fn)
        except tenacity.RetryError as failure:
            last = failure.last_attempt.exception()
            attempts = failure.last_attempt.attempt_number
            if isinstance(last, UnreachableError):
                raise ExchangeUnreachableError(str(last), UNREACHABLE_HINT) from last
            raise ExchangeError(f"{what} failed after {attempts} attempts; last error: {last}") from last

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return self.delay(state.attempt_number, getattr(exc, "retry_after", None))

    def _log_retry(self, state: tenacity.RetryCallState, what: str) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        if self.on_retry is not None:
            self.on_retry(f"retry {state.attempt_number + 1} of {self.max_attempts}: {exc}")
            return
        log.warning(
            "%s: %s; retrying in %.1f s (attempt %d of %d)",
            what,
            exc,
            wait,
            state.attempt_number + 1,
            self.max_attempts,
        )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def transport_error(exc: httpx.TransportError, *, exchange: str, url: str, timeout: float) -> TransientExchangeError:
    """Translate an httpx transport failure into the retryable error it stands for."""
    if isinstance(exc, httpx.TimeoutException):
        return TransientExchangeError(f"{exchange} did not answer within {timeout:g} s ({type(exc).__name__})")
    if isinstance(exc, httpx.ConnectError):
        return UnreachableError(f"cannot reach {exchange} at {url}: {_cause(exc)}")
    return TransientExchangeError(f"{exchange} connection failed: {_cause(exc)}")


def http_status_error(response: httpx.Response, *, exchange: str) -> ExchangeError | None:
    """The error for a rate-limit or server-side HTTP status, or None when the status is not one of those."""
    status = response.status_code
    if status not in (403, 418, 429) and status < 500:
        return None
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    reason = {403: "access denied (rate limit)", 418: "IP banned for too many requests", 429: "rate limited"}
    text = f"{exchange} HTTP {status} {reason.get(status, response.reason_phrase)}".rstrip()
    snippet = _snippet(response)
    if snippet:
        text += f": {snippet}"
    if retry_after is not None and retry_after > MAX_RETRY_AFTER:
        return ExchangeError(f"{text}; the exchange asks to wait {retry_after:.0f} s, try again later")
    if retry_after is not None:
        text += f" (Retry-After {retry_after:g} s)"
    return TransientExchangeError(text, retry_after=retry_after)


def json_body(response: httpx.Response, *, exchange: str):
    """The decoded JSON body; an unreadable body is transient (proxies and overloaded servers truncate)."""
    try:
        return response.json()
    except ValueError as exc:
        size = len(response.content)
        raise TransientExchangeError(
            f"{exchange} sent an unreadable response (HTTP {response.status_code}, {size} bytes: {exc})"
        ) from None


def unexpected_status(response: httpx.Response, *, exchange: str) -> ExchangeError:
    """A status the exchange's API does not answer with (e.g. 404): most likely the wrong base URL."""
    text = f"{exchange} answered HTTP {response.status_code} to {response.url.path}"
    snippet = _snippet(response)
    if snippet:
        text += f": {snippet}"
    return ExchangeError(f"{text}; check --base-url")


def _snippet(response: httpx.Response, limit: int = 120) -> str:
    try:
        text = response.text
    except (UnicodeDecodeError, LookupError):  # a body we cannot decode is just not quoted
        return ""
    text = re.sub(r"<[^>]*>", " ", text)  # error pages are often HTML
    return " ".join(text.split())[:limit]


def _cause(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())
