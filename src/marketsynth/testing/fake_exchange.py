"""A fake Bybit v5 + Binance USDⓈ-M market-data server on 127.0.0.1, with deterministic fault injection.

It speaks ``/v5/market/kline``, ``/v5/market/funding/history``, ``/v5/market/time``,
``/v5/market/instruments-info``, ``/fapi/v1/klines``, ``/fapi/v1/fundingRate``, ``/fapi/v1/time`` and
``/fapi/v1/exchangeInfo`` as the exchanges document them, serving candles from bars frames (any base
timeframe; longer intervals are resampled, e.g. 4h and 1d from 1h) and a funding-rate series derived from them
(every 8 h; ``FakeMarket.funding``). ``now`` is the fake's market clock: the candle containing it is served as
the still-open candle, later candles and funding do not exist yet. The ``Date`` header, Bybit's ``time``, the
time endpoints and ``serverTime`` report ``now + clock_skew`` (a server clock off by that much);
``envelope_time`` overrides Bybit's ``time`` field alone (``0`` reproduces issue 13, ``"omit"`` leaves it
out). Rate-limit windows (``X-Bapi-Limit-*``, ``X-MBX-USED-WEIGHT-1M``) run on the real clock.

    with FakeExchange.from_csv("BTCUSDT_1h.csv") as fake:
        fake.faults.add("429", times=2, retry_after=1)
        source = get_source("binance", base_url=fake.base_url)

Faults apply to the next kline and funding requests, first added first used: ``429`` and ``418`` (with
``Retry-After``), ``403``, ``bybit_10006`` (a 429 on Binance paths), ``500``/``502``/``503``, ``timeout``
(answers after ``delay`` seconds), ``disconnect`` (closes the connection without answering), ``malformed``
(truncated JSON), ``empty`` (a 200 with no body) and ``exhausted`` (a normal answer whose rate-limit headers say
the budget is spent). ``fake.missing.add(symbol, start, end)`` removes
base bars the exchange truly lacks; longer candles are built from the bars that remain.

Run standalone: ``python -m marketsynth.testing.fake_exchange --csv FILE --symbol BTCUSDT --port 8765``.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pandas as pd

from marketsynth.testing.fake_market import FakeMarket, Fault, Faults, MissingBars, Series, read_kline_csv
from marketsynth.testing.fake_trading import TRADING_PATHS, FakeTrading, serve_trading
from marketsynth.timeframes import TIMEFRAMES, Timeframe, to_ms

BYBIT_KLINE, BYBIT_INSTRUMENTS = "/v5/market/kline", "/v5/market/instruments-info"
BYBIT_FUNDING, BYBIT_TIME = "/v5/market/funding/history", "/v5/market/time"
BINANCE_KLINES, BINANCE_INFO = "/fapi/v1/klines", "/fapi/v1/exchangeInfo"
BINANCE_FUNDING, BINANCE_TIME = "/fapi/v1/fundingRate", "/fapi/v1/time"
KLINE_PATHS = (BYBIT_KLINE, BINANCE_KLINES)
FUNDING_PATHS = (BYBIT_FUNDING, BINANCE_FUNDING)
FAULTED_PATHS = KLINE_PATHS + FUNDING_PATHS
TIME_PATHS = (BYBIT_TIME, BINANCE_TIME)
BYBIT_CODES = {tf.bybit: tf for tf in TIMEFRAMES if tf.bybit}
BINANCE_CODES = {tf.binance: tf for tf in TIMEFRAMES if tf.binance}
BYBIT_CATEGORIES = ("linear", "spot", "inverse")
BYBIT_WINDOW_LIMIT, BYBIT_WINDOW_S = 600, 5  # Bybit: 600 requests per IP per 5 s
BINANCE_WEIGHT_LIMIT = 2400


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    params: dict[str, str]
    status: int
    fault: str | None = None


@dataclass
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    hang_up: bool = False  # close the connection without answering


def _json_reply(payload, status: int = 200) -> _Reply:
    return _Reply(status, json.dumps(payload, separators=(",", ":")).encode())


def _text_reply(text: str, status: int, content_type: str = "text/plain") -> _Reply:
    return _Reply(status, text.encode(), {}, content_type)


class _Refused(Exception):
    """A request the exchange rejects; carries the exchange's error reply."""

    def __init__(self, reply: _Reply):
        self.reply = reply


class FakeExchange:
    """A real HTTP server that speaks the Bybit v5 and Binance USDⓈ-M public kline APIs.

    ``data`` maps symbols to bars frames of one base timeframe (inferred, or ``timeframe=``); ``listed`` adds
    symbols that exist without candles; Bybit serves them in ``category`` only; ``instruments_page_size``
    forces Bybit's instrument list into pages.
    """

    def __init__(
        self,
        data: dict[str, pd.DataFrame],
        *,
        timeframe: Timeframe | str | None = None,
        listed: tuple[str, ...] | list[str] = (),
        category: str = "linear",
        host: str = "127.0.0.1",
        port: int = 0,
        instruments_page_size: int = 1000,
    ):
        self.market = FakeMarket(data, timeframe=timeframe)
        self.listed = sorted(set(self.market.data) | {s.upper() for s in listed})
        self.category = category
        self.instruments_page_size = instruments_page_size
        self.faults = Faults()
        self.trading = FakeTrading(self.market, lambda: self.reported_now)  # signed order endpoints: fake_trading.py
        self.missing: MissingBars = self.market.missing
        self.host, self.port = host, port
        self.errors: list[str] = []  # bugs in the fake itself, answered as HTTP 500
        self.clock_skew = pd.Timedelta(0)  # what its clock reports minus its market clock
        self.envelope_time: int | str | None = None  # Bybit's ``time`` field: None = its clock, "omit", or ms
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._bybit_window = (0, 0)  # (window index, requests in it)
        self._binance_minute = (0, 0)  # (minute index, weight used in it)
        self._server: _Server | None = None
        self._stopping = threading.Event()

    @classmethod
    def from_csv(cls, path: str | Path, symbol: str = "BTCUSDT", **kwargs) -> FakeExchange:
        """From a Binance kline export (``time``/``open_time`` in ms, open, high, low, close, volume, ...)."""
        return cls({symbol: read_kline_csv(path)}, **kwargs)

    # ---------------------------------------------------------------- lifecycle and state

    def start(self) -> str:
        """Start serving in a daemon thread; returns the base URL."""
        if self._server is None:
            self._stopping.clear()
            self._server = _Server((self.host, self.port), _Handler)
            self._server.fake = self
            self.port = self._server.server_address[1]
            serve = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
            serve.start()
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._stopping.set()  # wakes handlers stalled by a "timeout" fault
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeExchange:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def now(self) -> pd.Timestamp:
        return self.market.now

    @now.setter
    def now(self, value) -> None:
        self.market.now = value

    @property
    def reported_now(self) -> pd.Timestamp:
        """The time its clock reports (``Date``, ``time``, time endpoints): the market clock plus ``clock_skew``."""
        return self.market.now + self.clock_skew

    @property
    def base_timeframe(self) -> Timeframe:
        return self.market.base_timeframe

    def candles(self, symbol: str, timeframe: Timeframe | str) -> pd.DataFrame:
        """What the exchange serves now, as a bars frame: closed candles plus the open one."""
        return self.market.candles(symbol, timeframe)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def kline_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path in KLINE_PATHS]

    def funding_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path in FUNDING_PATHS]

    def funding(self, symbol: str) -> pd.DataFrame:
        """The funding rates it serves now, as a funding frame (time, rate)."""
        series = self.market.funding(symbol)
        return pd.DataFrame({"time": pd.to_datetime(series.times, unit="ms", utc=True).as_unit("us"),
                             "rate": series.rates})

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # ---------------------------------------------------------------- serving one request

    def respond(self, path: str, params: dict[str, str]) -> _Reply:
        routes = {
            BYBIT_KLINE: self._bybit_kline,
            BYBIT_FUNDING: self._bybit_funding,
            BYBIT_TIME: self._bybit_time,
            BYBIT_INSTRUMENTS: self._bybit_instruments,
            BINANCE_KLINES: self._binance_klines,
            BINANCE_FUNDING: self._binance_funding,
            BINANCE_TIME: self._binance_time,
            BINANCE_INFO: self._binance_exchange_info,
        }
        route = routes.get(path)
        if route is None:
            return self._record(path, params, _text_reply("Not Found", 404))
        bybit = path.startswith("/v5/")
        fault = self.faults.take() if path in FAULTED_PATHS else None
        kind = fault.kind if fault else None
        if kind == "disconnect":
            return self._record(path, params, _Reply(0, b"", hang_up=True), kind)
        if fault is not None and kind not in ("timeout", "malformed", "exhausted"):
            reply = self._fault_reply(fault, bybit=bybit)
        else:
            if kind == "timeout":
                self._record(path, params, _Reply(200, b""), kind)  # logged now: the client gives up first
                self._stopping.wait(fault.delay)
            try:
                reply = route(params)
            except _Refused as refused:
                reply = refused.reply
            if kind == "malformed":
                reply.body = reply.body[: max(1, len(reply.body) // 2)]
        reply.headers = {**self._limit_headers(path, params, bybit, fault), **reply.headers}
        if kind != "timeout":
            self._record(path, params, reply, kind)
        return reply

    def _record(self, path: str, params: dict[str, str], reply: _Reply, fault: str | None = None) -> _Reply:
        with self._lock:
            self._requests.append(RecordedRequest(path, dict(params), reply.status, fault))
        return reply

    def _fault_reply(self, fault: Fault, *, bybit: bool) -> _Reply:
        kind = fault.kind
        if kind == "bybit_10006" and bybit:
            reply = self._bybit_payload(10006, "Too many visits!")
            reset_ms = int((time.time() + fault.reset) * 1000)
            reply.headers = {"X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": str(reset_ms)}
            return reply
        if kind in ("429", "418", "bybit_10006"):
            status = 418 if kind == "418" else 429
            wait = fault.retry_after if fault.retry_after is not None else (2.0 if status == 418 else 1.0)
            message = "Way too many requests; IP banned" if status == 418 else "Too many requests"
            reply = _text_reply("Too Many Requests", status) if bybit else _binance_payload(-1003, message, status)
            reply.headers["Retry-After"] = f"{wait:g}"
            return reply
        if kind == "403":
            return _text_reply("access too frequent" if bybit else "WAF limit violated", 403)
        if kind == "empty":
            return _Reply(200, b"")
        if kind == "502":
            return _text_reply("<html><body><h1>502 Bad Gateway</h1></body></html>", 502, "text/html")
        return _text_reply("Service Unavailable" if kind == "503" else "Internal Server Error", int(kind))

    def _limit_headers(self, path: str, params: dict[str, str], bybit: bool, fault: Fault | None) -> dict:
        """Rate-limit headers as the exchange sends them; an ``exhausted`` fault says the budget is spent."""
        exhausted = fault if fault is not None and fault.kind == "exhausted" else None
        real_now = time.time()
        with self._lock:
            if bybit:
                window = int(real_now // BYBIT_WINDOW_S)
                count = self._bybit_window[1] + 1 if self._bybit_window[0] == window else 1
                self._bybit_window = (window, count)
                remaining = 0 if exhausted else max(0, BYBIT_WINDOW_LIMIT - count)
                reset = real_now + exhausted.reset if exhausted else (window + 1) * BYBIT_WINDOW_S
                return {
                    "X-Bapi-Limit": str(BYBIT_WINDOW_LIMIT),
                    "X-Bapi-Limit-Status": str(remaining),
                    "X-Bapi-Limit-Reset-Timestamp": str(int(reset * 1000)),
                }
            minute = int(real_now // 60)
            weight = binance_weight(path, params)
            used = self._binance_minute[1] + weight if self._binance_minute[0] == minute else weight
            self._binance_minute = (minute, used)
            return {"X-MBX-USED-WEIGHT-1M": str(BINANCE_WEIGHT_LIMIT if exhausted else used)}

    def _candles_for(self, symbol: str, tf: Timeframe, refuse) -> Series:
        if not self.market.serves(tf):
            base = self.market.base_timeframe.name
            raise refuse(f"fake exchange has only {base} and longer candles for {symbol}")
        return self.market.series(symbol, tf)

    # ---------------------------------------------------------------- Bybit v5

    def _bybit_payload(self, code: int, message: str, result: dict | None = None) -> _Reply:
        payload = {"retCode": code, "retMsg": message, "result": result or {}, "retExtInfo": {}}
        envelope = self.envelope_time
        if envelope == "omit":
            return _json_reply(payload)
        return _json_reply({**payload, "time": to_ms(self.reported_now) if envelope is None else envelope})

    def _bybit_refusal(self, message: str) -> _Refused:
        return _Refused(self._bybit_payload(10001, message))

    def _bybit_kline(self, params: dict[str, str]) -> _Reply:
        category, symbol = params.get("category", ""), params.get("symbol", "")
        if category not in BYBIT_CATEGORIES:
            raise self._bybit_refusal("params error: Category is invalid")
        if not symbol:
            raise self._bybit_refusal("params error: symbol is required")
        tf = BYBIT_CODES.get(params.get("interval", ""))
        if tf is None:
            raise self._bybit_refusal("Invalid period!")
        if category != self.category or symbol not in self.listed:
            raise self._bybit_refusal("Not supported symbols")
        limit = _int_param(params, "limit", 200, self._bybit_refusal)
        if not 1 <= limit <= 1000:
            raise self._bybit_refusal("params error: limit must be between 1 and 1000")
        start = _int_param(params, "start", None, self._bybit_refusal)
        end = _int_param(params, "end", None, self._bybit_refusal)
        series = self._candles_for(symbol, tf, self._bybit_refusal)
        selected = series.select(start, end, limit, newest=True)
        rows = [[str(t), *map(repr, ohlcv), repr(ohlcv[4] * ohlcv[3])] for t, _, ohlcv in reversed(selected)]
        return self._bybit_payload(0, "OK", {"category": category, "symbol": symbol, "list": rows})

    def _bybit_funding(self, params: dict[str, str]) -> _Reply:
        category, symbol = params.get("category", ""), params.get("symbol", "")
        if category not in ("linear", "inverse"):
            raise self._bybit_refusal("params error: Category is invalid")
        if not symbol:
            raise self._bybit_refusal("params error: symbol is required")
        if category != self.category or symbol not in self.listed:
            raise self._bybit_refusal("Not supported symbols")
        limit = _int_param(params, "limit", 200, self._bybit_refusal)
        if not 1 <= limit <= 200:
            raise self._bybit_refusal("params error: limit must be between 1 and 200")
        start = _int_param(params, "startTime", None, self._bybit_refusal)
        end = _int_param(params, "endTime", None, self._bybit_refusal)
        if start is not None and end is None:
            raise self._bybit_refusal("params error: startTime cannot be passed without endTime")
        selected = self.market.funding(symbol).select(start, end, limit, newest=True)
        items = [{"symbol": symbol, "fundingRate": f"{rate:.8f}", "fundingRateTimestamp": str(t)}
                 for t, rate, _ in reversed(selected)]
        return self._bybit_payload(0, "OK", {"category": category, "list": items})

    def _bybit_time(self, params: dict[str, str]) -> _Reply:
        ns = int(self.reported_now.value)
        return self._bybit_payload(0, "OK", {"timeSecond": str(ns // 1_000_000_000), "timeNano": str(ns)})

    def _bybit_instruments(self, params: dict[str, str]) -> _Reply:
        category = params.get("category", "")
        if category not in BYBIT_CATEGORIES:
            raise self._bybit_refusal("params error: Category is invalid")
        symbols = self.listed if category == self.category else []
        limit = max(1, min(_int_param(params, "limit", 500, self._bybit_refusal), 1000, self.instruments_page_size))
        offset = _int_param(params, "cursor", 0, self._bybit_refusal)
        items = [
            {"symbol": s, "contractType": "LinearPerpetual", "status": "Trading", **_coins(s, "Coin"),
             **self.trading.bybit_instrument_fields(s)}
            for s in symbols[offset : offset + limit]
        ]
        cursor = str(offset + limit) if offset + limit < len(symbols) else ""
        return self._bybit_payload(0, "OK", {"category": category, "list": items, "nextPageCursor": cursor})

    # ---------------------------------------------------------------- Binance USDⓈ-M

    def _binance_klines(self, params: dict[str, str]) -> _Reply:
        symbol = params.get("symbol", "")
        if not symbol:
            message = "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            raise _Refused(_binance_payload(-1102, message))
        tf = BINANCE_CODES.get(params.get("interval", ""))
        if tf is None:
            raise _Refused(_binance_payload(-1120, "Invalid interval."))
        if symbol not in self.listed:
            raise _Refused(_binance_payload(-1121, "Invalid symbol."))

        def refuse(message: str) -> _Refused:
            return _Refused(_binance_payload(-1100, message))

        limit = _int_param(params, "limit", 500, refuse)
        if not 1 <= limit <= 1500:
            raise _Refused(_binance_payload(-1130, "Data sent for parameter 'limit' is not valid."))
        start = _int_param(params, "startTime", None, refuse)
        end = _int_param(params, "endTime", None, refuse)
        if start is not None and end is not None and start > end:
            raise _Refused(_binance_payload(-1023, "Start time is greater than end time."))
        series = self._candles_for(symbol, tf, lambda m: _Refused(_binance_payload(-1120, m)))
        rows = [
            [
                t,
                *map(repr, (o, h, low, c, v)),
                close_ms,
                repr(v * c),
                int(v),
                repr(v / 2),
                repr(v * c / 2),
                "0",
            ]
            for t, close_ms, (o, h, low, c, v) in series.select(start, end, limit, newest=start is None)
        ]
        return _json_reply(rows)

    def _binance_funding(self, params: dict[str, str]) -> _Reply:
        def refuse(message: str) -> _Refused:
            return _Refused(_binance_payload(-1100, message))

        symbol = params.get("symbol", "")
        if symbol and symbol not in self.listed:
            raise _Refused(_binance_payload(-1121, "Invalid symbol."))
        limit = _int_param(params, "limit", 100, refuse)
        if not 1 <= limit <= 1000:
            raise _Refused(_binance_payload(-1130, "Data sent for parameter 'limit' is not valid."))
        start = _int_param(params, "startTime", None, refuse)
        end = _int_param(params, "endTime", None, refuse)
        if start is not None and end is not None and start > end:
            raise _Refused(_binance_payload(-1023, "Start time is greater than end time."))
        if start is None and end is None:
            limit = min(limit, 200)  # "the most recent 200"
        selected = self.market.funding(symbol).select(start, end, limit, newest=start is None) if symbol else []
        rows = [{"symbol": symbol, "fundingRate": f"{rate:.8f}", "fundingTime": t, "markPrice": f"{mark:.8f}"}
                for t, rate, mark in selected]
        return _json_reply(rows)

    def _binance_time(self, params: dict[str, str]) -> _Reply:
        return _json_reply({"serverTime": to_ms(self.reported_now)})

    def _binance_exchange_info(self, params: dict[str, str]) -> _Reply:
        symbols = [
            {"symbol": s, "pair": s, "contractType": "PERPETUAL", "status": "TRADING", **_coins(s, "Asset"),
             **self.trading.binance_symbol_fields(s)}
            for s in self.listed
        ]
        limits = [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": BINANCE_WEIGHT_LIMIT,
            }
        ]
        info = {"timezone": "UTC", "serverTime": to_ms(self.reported_now), "rateLimits": limits, "exchangeFilters": []}
        return _json_reply({**info, "assets": [], "symbols": symbols})


def binance_weight(path: str, params: dict[str, str]) -> int:
    """Request weight Binance charges: klines by ``limit``, everything else here 1 (fundingRate has its own
    500 per 5 minutes, not modelled)."""
    if path != BINANCE_KLINES:
        return 1
    try:
        limit = int(params.get("limit") or 500)
    except ValueError:
        return 1
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


def _binance_payload(code: int, message: str, status: int = 400) -> _Reply:
    return _json_reply({"code": code, "msg": message}, status)


def _int_param(params: dict[str, str], name: str, default, refuse):
    text = params.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise refuse(f"params error: {name} is not an integer") from None


def _coins(symbol: str, suffix: str) -> dict[str, str]:
    """Base and quote of a symbol, as ``baseCoin``/``quoteCoin`` (Bybit) or ``baseAsset``/``quoteAsset``."""
    for quote in ("USDT", "USDC", "BUSD", "USD", "BTC", "ETH"):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return {f"base{suffix}": symbol[: -len(quote)], f"quote{suffix}": quote}
    return {f"base{suffix}": symbol, f"quote{suffix}": ""}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    fake: FakeExchange

    def handle_error(self, request, client_address) -> None:
        pass  # a client that went away (e.g. after a timeout) is not an error of the fake


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeExchange/1.0"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    timeout = 30
    server: _Server

    def do_POST(self) -> None:
        serve_trading(self, "POST")

    def do_DELETE(self) -> None:
        serve_trading(self, "DELETE")

    def do_GET(self) -> None:
        if urlsplit(self.path).path in TRADING_PATHS:
            return serve_trading(self, "GET")
        fake = self.server.fake
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        try:
            reply = fake.respond(url.path, params)
        except Exception as exc:  # a bug in the fake: answer 500 and keep it for the test to see
            fake.errors.append(f"{type(exc).__name__}: {exc}")
            reply = _text_reply(f"fake exchange error: {type(exc).__name__}: {exc}", 500)
        if reply.hang_up:
            self.close_connection = True
            return
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:
            self.close_connection = True

    def date_time_string(self, timestamp=None) -> str:
        return email.utils.formatdate(self.server.fake.reported_now.timestamp(), usegmt=True)

    def log_message(self, format, *args) -> None:
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve candles from a kline CSV as fake Bybit and Binance APIs.")
    parser.add_argument("--csv", required=True, help="Binance kline export (time in ms, open, high, ...)")
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--now", help="market clock (ISO time); default just after the last bar")
    args = parser.parse_args(argv)
    fake = FakeExchange.from_csv(args.csv, symbol=args.symbol, host=args.host, port=args.port)
    if args.now:
        fake.now = args.now
    url = fake.start()
    print(
        f"fake exchange serving {args.symbol} at {url} (Bybit {BYBIT_KLINE}, Binance {BINANCE_KLINES}); "
        f"market time {fake.now:%Y-%m-%d %H:%M} UTC; Ctrl-C stops it",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
