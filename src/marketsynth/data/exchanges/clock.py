"""Which clock decides that a candle has closed: the exchange's, when it is sane; ours otherwise.

Every kline answer carries the exchange's time (Bybit's ``time`` field, else the HTTP ``Date`` header). When it
is within ``CLOCK_TOLERANCE`` of ours, the earlier of the two decides (a candle still open on the exchange is
never kept, even when our clock runs slightly ahead). When it is missing, zero or further off, it is not used:
the exchange's time endpoint (``/v5/market/time``, ``/fapi/v1/time``) is asked once; if that one agrees with our
clock it decides, otherwise our clock does. Either way one warning per source names the times involved.

A reading also says whether an exchange clock backed it (``trusted``). Only then may the time after the newest
candle of an answer count as a period the exchange answered without candles (a *known gap*); with our clock
alone, an empty tail may simply not exist yet on the exchange, so it is asked again next time.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from marketsynth.timeframes import from_ms

#: How far the exchange's clock may be from ours before it is not believed.
CLOCK_TOLERANCE = pd.Timedelta(minutes=5)


class ExchangeClockWarning(UserWarning):
    """The exchange's clock was missing, zero or far from ours; another clock decided what has closed."""


@dataclass(frozen=True)
class ClockReading:
    closed_by: pd.Timestamp  # every candle that ends at or before this has closed
    trusted: bool  # an exchange clock that agrees with ours backed it
    label: str  # which clock decided, for messages: "bybit's clock", "our clock"


class ClockCheck:
    """Per-source clock sanity: ``reading(now, server_ms)`` for each answer; warns at most once."""

    def __init__(self, exchange: str, time_path: str, server_time: Callable[[], int | None],
                 tolerance: pd.Timedelta = CLOCK_TOLERANCE):
        self.exchange = exchange
        self.time_path = time_path
        self._server_time = server_time
        self.tolerance = tolerance
        self._lock = threading.Lock()
        self._checked = False
        self._endpoint_skew: pd.Timedelta | None = None  # endpoint minus ours, when the endpoint agreed
        self.warned: str | None = None

    def reading(self, now: pd.Timestamp, server_ms: int | None) -> ClockReading:
        server = _plausible(server_ms)
        if server is not None and abs(server - now) <= self.tolerance:
            return ClockReading(min(now, server), True, f"{self.exchange}'s clock")
        skew = self._fallback(now, server_ms)
        if skew is not None:
            return ClockReading(min(now, now + skew), True, f"{self.exchange}'s {self.time_path}")
        return ClockReading(now, False, "our clock")

    def _fallback(self, now: pd.Timestamp, server_ms: int | None) -> pd.Timedelta | None:
        with self._lock:
            if self._checked:
                return self._endpoint_skew
            self._checked = True
            endpoint = _plausible(self._ask_endpoint())
            if endpoint is not None and abs(endpoint - now) <= self.tolerance:
                self._endpoint_skew = endpoint - now
            server = _plausible(server_ms)
            if server is not None:
                said = f"time {_fmt(server)} ({_describe_offset(server - now)})"
            else:
                said = "no time" if server_ms is None else f"time {server_ms}"
            if self._endpoint_skew is not None:
                decision = f"its {self.time_path} says {_fmt(endpoint)}, which decides which candles have closed"
            else:
                answer = "did not answer" if endpoint is None else f"says {_fmt(endpoint)}"
                decision = (f"its {self.time_path} {answer}; deciding which candles have closed by our clock "
                            "(check this machine's clock if ours is the wrong one)")
            self.warned = (f"{self.exchange}'s answers carry {said} while our clock says {_fmt(now)}; "
                           f"{decision}")
        warnings.warn(self.warned, ExchangeClockWarning, stacklevel=4)
        return self._endpoint_skew

    def _ask_endpoint(self) -> int | None:
        try:
            return self._server_time()
        except Exception:  # noqa: BLE001 - a clock we cannot read is simply not used
            return None


def _plausible(ms: int | None) -> pd.Timestamp | None:
    """The time ``ms`` stands for; None for missing, zero or negative values (an unset field, not a clock)."""
    if ms is None or ms <= 0:
        return None
    try:
        return from_ms(ms)
    except (OverflowError, ValueError):
        return None


def _fmt(ts: pd.Timestamp) -> str:
    return f"{ts:%Y-%m-%d %H:%M:%S} UTC"


def _describe_offset(offset: pd.Timedelta) -> str:
    seconds = abs(offset.total_seconds())
    if seconds >= 2 * 86400:
        amount = f"{seconds / 86400:.0f} days"
    elif seconds >= 2 * 3600:
        amount = f"{seconds / 3600:.0f} h"
    elif seconds >= 120:
        amount = f"{seconds / 60:.0f} min"
    else:
        amount = f"{seconds:.0f} s"
    return f"{amount} {'behind' if offset < pd.Timedelta(0) else 'ahead of'} ours"
