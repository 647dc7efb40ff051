"""What the Bybit and Binance order adapters share: signed HTTP, the clock offset, and a ``place`` that never
opens a second order.

**Signed requests** carry a timestamp on the exchange's clock: we keep ``offset`` = server time − our time,
measured at the midpoint of a call to the exchange's time endpoint, refreshed every ``resync_s`` and whenever
the exchange says a timestamp fell outside the receive window (Bybit 10002, Binance −1021; the request is then
sent once more).

**Reads** (lookups, positions, balance, instruments, time) are idempotent: the generic ``RetryPolicy`` of
``marketsynth.data.exchanges.http`` retries them on rate limits, 5xx and I/O trouble.

**Placing an order is never retried blindly.** ``place`` sends once. When the answer says the order was not
taken (rate limited, no connection made) it waits and sends again, a bounded number of times. When the answer
leaves it open whether the order exists (a timeout or dropped connection after sending, a 5xx, Binance's 503
"Unknown error", Bybit's 10016), it first waits until that request's receive window has passed (after that the
exchange refuses it, so it cannot land late), then looks the order up by its client id: found, its state is the
answer; not found, it is sent once more with the same id; still unsure after that, ``OrderStateUnknown``. A
duplicate-id refusal (Bybit 110072, Binance −4116) means the order exists: it is looked up and returned. Once
the exchange has acknowledged an order, ``place`` returns its state and does not raise; a refused resend is
looked up once more too, since the refusal says nothing about the first send.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import httpx

import marketsynth
from marketsynth.data.exchanges.http import MAX_RETRY_AFTER, RateLimiter, RetryPolicy, parse_retry_after
from marketsynth.errors import (
    ConfigError,
    ExchangeError,
    OrderRejected,
    OrderStateUnknown,
    TransientExchangeError,
)
from marketsynth.trading.brokers.base import Broker, Instrument, OrderRequest, OrderState
from marketsynth.trading.brokers.credentials import Credentials

log = logging.getLogger(__name__)


class Uncertain(TransientExchangeError):
    """The request may have been carried out: no answer after sending, a 5xx, an "unknown" error."""

    sent_ms: int | None = None  # the exchange-clock timestamp the request was signed with


class Refused(TransientExchangeError):
    """The exchange did not take the request (rate limit) or it never left (no connection): safe to send again."""


class ClockRejected(ExchangeError):
    """The request's timestamp fell outside the exchange's receive window (Bybit 10002, Binance -1021)."""


class DuplicateId(ExchangeError):
    """The exchange already holds an order with this client order id (Bybit 110072, Binance -4116)."""


class NotFound(ExchangeError):
    """The exchange has no such order (Binance -2013/-2011, Bybit 110001)."""


class ExchangeBroker(Broker):
    """An exchange's order API as a ``Broker``. Subclasses say how to sign, how to read answers and which
    endpoints to call; this class owns the clock offset, the retries and the placement rules."""

    name: str  # "bybit" | "binance"
    display_name: str
    default_base_url: str
    settle_asset = "USDT"
    lookup_before_send = False  # look an id up before its first send (where the exchange forgets finished ids)

    def __init__(
        self,
        credentials: Credentials,
        *,
        base_url: str | None = None,
        timeout: float = 10.0,
        recv_window_ms: int = 5000,
        max_attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        requests_per_second: float = 5.0,
        refused_resends: int = 3,
        resync_s: float = 300.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ):
        if not isinstance(credentials, Credentials) or credentials.exchange != self.name:
            raise ConfigError(f"{self.display_name} needs {self.name} credentials (load_credentials('{self.name}'))")
        if not 0 < recv_window_ms <= 60_000:
            raise ConfigError(f"recv_window_ms {recv_window_ms} must be between 1 and 60000")
        self.credentials = credentials
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.timeout = timeout
        self.recv_window_ms = int(recv_window_ms)
        self.refused_resends = refused_resends
        self.resync_s = resync_s
        self._clock, self._sleep = clock, sleep
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            headers={"User-Agent": f"marketsynth/{marketsynth.__version__}", "Accept": "application/json"},
            transport=transport,
        )
        self.limiter = RateLimiter(requests_per_second, clock=clock, sleep=sleep)
        self.retry = RetryPolicy(max_attempts=max_attempts, backoff=backoff, max_backoff=max_backoff, sleep=sleep)
        self._lock = threading.Lock()
        self._offset_ms: int | None = None
        self._synced_at = 0.0
        self._instruments: dict[str, Instrument] = {}

    # ---------------------------------------------------------------- the clock

    def server_time_ms(self) -> int:
        """The exchange's clock from its time endpoint (unsigned, retried)."""
        return self._read(lambda: self._parse_time(self._call("GET", self.time_path, {}, signed=False)),
                          what=f"{self.name} server time")

    def sync_clock(self) -> int:
        """Measure the offset between the exchange's clock and ours (ms, positive when the exchange is ahead)."""
        before = self._clock()
        server = self.server_time_ms()
        after = self._clock()
        offset = int(server - round((before + after) / 2 * 1000))
        with self._lock:
            self._offset_ms, self._synced_at = offset, after
        log.debug("%s clock offset %+d ms", self.name, offset)
        return offset

    @property
    def clock_offset_ms(self) -> int | None:
        return self._offset_ms

    def now_ms(self) -> int:
        """Our estimate of the exchange's clock, in ms (syncs first when the offset is unknown or old)."""
        if self._offset_ms is None or self._clock() - self._synced_at > self.resync_s:
            self.sync_clock()
        return int(self._clock() * 1000) + int(self._offset_ms or 0)

    # ---------------------------------------------------------------- Broker

    def place(self, order: OrderRequest) -> OrderState:
        if not isinstance(order, OrderRequest):
            raise ConfigError("place() takes an OrderRequest")
        quantity = self.instrument(order.symbol).quantity_text(order.quantity)
        cid = order.client_id
        if self.lookup_before_send:
            found = self.lookup(order.symbol, cid)
            if found is not None:
                log.info("%s order %s already exists (%s); not sent again", self.name, cid, found.status)
                return found
        unsure = refused = resynced = 0
        while True:
            try:
                state = self._create(order, quantity)
                log.info("%s order %s %s %s %s: %s", self.name, cid, order.side, quantity, order.symbol, state.status)
                return state
            except ClockRejected as exc:
                if resynced:
                    raise ExchangeError(f"{self.display_name} order {cid} not placed: {exc}; check this machine's "
                                        "clock") from None
                resynced += 1
                self.sync_clock()
            except Refused as exc:
                if refused >= self.refused_resends:
                    raise TransientExchangeError(f"{self.display_name} order {cid} not placed after {refused + 1} "
                                                 f"tries: {exc}", retry_after=exc.retry_after) from None
                refused += 1
                self._wait(self.retry.delay(refused, exc.retry_after))
            except OrderRejected as exc:
                if not unsure:
                    raise
                found = self._settle(order, exc)  # the refused resend says nothing about the first send
                if found is None:
                    raise
                log.warning("%s order %s: the resend was refused (%s); the first send had landed (%s)", self.name,
                            cid, exc, found.status)
                return found
            except DuplicateId as exc:
                found = self._settle(order, exc)
                if found is None:
                    raise OrderStateUnknown(f"{self.display_name} says order {cid} exists ({exc}) but a lookup does "
                                            "not find it; reconcile before sending it again", cid) from None
                log.info("%s order %s already existed: %s", self.name, cid, found.status)
                return found
            except Uncertain as exc:
                self._await_expiry(exc.sent_ms)
                found = self._settle(order, exc)
                if found is not None:
                    log.warning("%s order %s: %s, but the order was found (%s)", self.name, cid, exc, found.status)
                    return found
                if unsure:
                    raise OrderStateUnknown(f"{self.display_name} order {cid}: {exc} on both sends and a lookup does "
                                            "not find it; reconcile before sending it again", cid) from None
                unsure += 1
                log.warning("%s order %s: %s and not found by its id; sending it once more", self.name, cid, exc)

    def lookup(self, symbol: str, client_id: str) -> OrderState | None:
        return self._read(lambda: self._lookup(symbol, client_id), what=f"{self.name} lookup {client_id}")

    def cancel(self, symbol: str, client_id: str) -> OrderState | None:
        """Cancel (retried: a second cancel of the same order is harmless), then look the order up."""
        with contextlib.suppress(NotFound):  # finished or never there: the lookup says which
            self._read(lambda: self._cancel(symbol, client_id), what=f"{self.name} cancel {client_id}")
        return self.lookup(symbol, client_id)

    def instrument(self, symbol: str) -> Instrument:
        """The symbol's lot size and tick size (asked once, then kept)."""
        cached = self._instruments.get(symbol)
        if cached is None:
            cached = self._read(lambda: self._instrument(symbol), what=f"{self.name} instrument {symbol}")
            self._instruments[symbol] = cached
        return cached

    def close(self) -> None:
        self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, credentials={self.credentials!r})"

    # ---------------------------------------------------------------- placement helpers

    def _settle(self, order: OrderRequest, cause: Exception) -> OrderState | None:
        """Look ``order`` up after ``cause`` left its fate open; OrderStateUnknown when even that fails."""
        try:
            return self.lookup(order.symbol, order.client_id)
        except ExchangeError as exc:
            raise OrderStateUnknown(f"{self.display_name} order {order.client_id}: {cause}; the lookup by its id "
                                    f"failed too ({exc}); reconcile before sending it again", order.client_id) from None

    def _await_expiry(self, sent_ms: int | None) -> None:
        """Wait until a request signed at ``sent_ms`` (exchange clock) is past its receive window, so the exchange
        refuses it should it still arrive."""
        if sent_ms is None:
            return
        wait = (sent_ms + self.recv_window_ms + 1) - (int(self._clock() * 1000) + int(self._offset_ms or 0))
        if wait > 0:
            self._wait(wait / 1000)

    def _wait(self, seconds: float) -> None:
        if seconds > MAX_RETRY_AFTER:
            raise TransientExchangeError(f"{self.display_name} asks to wait {seconds:.0f} s; try again later",
                                         retry_after=seconds)
        if seconds > 0:
            self._sleep(seconds)

    # ---------------------------------------------------------------- HTTP

    def _read(self, fn: Callable[[], Any], *, what: str) -> Any:
        """An idempotent call under the retry policy; a timestamp refused once re-syncs the clock."""

        def attempt():
            try:
                return fn()
            except ClockRejected:
                self.sync_clock()
                return fn()

        return self.retry.call(attempt, what=what)  # every message is redacted where it is made

    def _call(self, method: str, path: str, params: dict[str, Any], *, signed: bool = True) -> Any:
        """One request within the rate budget; the decoded answer, or the error class it stands for."""
        self.limiter.acquire()
        sent_ms = self.now_ms() if signed else None
        url, headers, content = self._prepare(method, path, params, sent_ms)
        log.debug("%s %s %s %s", self.name, method, path, _loggable(params))
        try:
            response = self._client.request(method, url, headers=headers, content=content)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise Refused(f"cannot reach {self.name} at {self.base_url}: {_cause(exc)}") from None
        except httpx.TransportError as exc:
            error = Uncertain(f"no answer from {self.name} to {method} {path} ({type(exc).__name__})")
            error.sent_ms = sent_ms
            raise error from None
        self._observe(response)
        try:
            return self._answer(response, method, path, params)
        except Uncertain as exc:
            exc.sent_ms = sent_ms
            raise

    def _http_trouble(self, response: httpx.Response, text: str) -> Exception | None:
        """The error for a rate-limit or server-side HTTP status (None for others): 429/418/403 were not
        carried out; 408 and 5xx may have been."""
        status = response.status_code
        snippet = self.credentials.redact(" ".join(text.split())[:160])
        if status in (403, 418, 429):
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            limit = {403: "access denied (rate limit)", 418: "IP banned for too many requests", 429: "rate limited"}
            return Refused(f"{self.name} HTTP {status} {limit[status]}: {snippet}", retry_after=retry_after)
        if status == 408 or status >= 500:
            return Uncertain(f"{self.name} HTTP {status}: {snippet}")
        return None

    def _decode(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            size = len(response.content)
            status = response.status_code
            raise Uncertain(f"{self.name} sent an unreadable answer (HTTP {status}, {size} bytes)") from None

    # ---------------------------------------------------------------- exchange specifics

    time_path: str

    @abstractmethod
    def _prepare(self, method: str, path: str, params: dict[str, Any],
                 timestamp_ms: int | None) -> tuple[str, dict[str, str], bytes | None]:
        """(url with query string, headers, body) for one request, signed when ``timestamp_ms`` is given."""

    @abstractmethod
    def _answer(self, response: httpx.Response, method: str, path: str, params: dict[str, Any]) -> Any:
        """The decoded answer of a successful call, else the error class it stands for (``Uncertain``,
        ``Refused``, ``ClockRejected``, ``DuplicateId``, ``NotFound``, ``OrderRejected``, ``ExchangeError``)."""

    @abstractmethod
    def _parse_time(self, payload: Any) -> int:
        """The exchange's time (ms) from its time endpoint's answer."""

    @abstractmethod
    def _create(self, order: OrderRequest, quantity: str) -> OrderState:
        """Send the order once; its state (an acknowledged order never raises after this point)."""

    @abstractmethod
    def _cancel(self, symbol: str, client_id: str) -> None:
        """One cancel request; NotFound when the exchange has no open order with this id."""

    @abstractmethod
    def _lookup(self, symbol: str, client_id: str) -> OrderState | None:
        """One attempt at finding the order by client id, open or finished."""

    @abstractmethod
    def _instrument(self, symbol: str) -> Instrument:
        """One attempt at reading the symbol's trading rules."""

    def _observe(self, response: httpx.Response) -> None:  # noqa: B027 - optional hook
        """Read rate-limit headers."""


def _loggable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in ("signature", "timestamp", "recvWindow")}


def _cause(exc: BaseException) -> str:
    return " ".join((str(exc).strip() or type(exc).__name__).split())


def number(value, default: float | None = 0.0) -> float | None:
    """A number from an exchange's text field ("" and missing give ``default``)."""
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def order_rejected(exchange: str, code: int, message: str, order_id: str) -> OrderRejected:
    """The one-line rejection for order ``order_id`` with the exchange's code and a hint for the common ones."""
    hints = {
        110007: "not enough available balance for the margin; trade less or add funds",
        110017: "a reduce-only order must shrink an open position; check the position first",
        -2019: "not enough margin; trade less or add funds",
        -2022: "a reduce-only order must shrink an open position; check the position first",
    }
    hint = hints.get(code)
    text = " ".join(str(message).split())
    return OrderRejected(f"{exchange} rejected order {order_id} (code {code}: {text})" + (f"; {hint}" if hint else ""),
                         code=code)
