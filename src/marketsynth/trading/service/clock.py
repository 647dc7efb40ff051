"""Clocks of the trading service: the live clock (wall time, waits until a candle has closed) and the replay
clock, which walks a stored period as if live: ``now`` jumps from one candle close to the next (at ``speed``
times real time, or with no waiting at all), and its ``time``/``sleep`` are virtual so that retries and receive
windows of the order adapters run on replay time too. ``on_tick`` hears every new replay time (the test harness
uses it to move a fake exchange's clock along).
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable

import pandas as pd

from marketsynth.errors import ConfigError
from marketsynth.timeframes import to_utc


class LiveClock:
    replay = False

    def __init__(self, *, sleep: Callable[[float], None] = _time.sleep, time: Callable[[], float] = _time.time):
        self._sleep, self._time = sleep, time

    def now(self) -> pd.Timestamp:
        return pd.Timestamp(self._time(), unit="s", tz="UTC")

    def time(self) -> float:
        return self._time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._sleep(seconds)

    def advance(self, to: pd.Timestamp) -> bool:
        """Wait until ``to``; always True (a live service runs until stopped)."""
        self.sleep((to - self.now()).total_seconds())
        return True


class ReplayClock:
    replay = True

    def __init__(self, start, end, *, speed: float | None = None, on_tick: Callable[[pd.Timestamp], None] | None = None,
                 sleep: Callable[[float], None] = _time.sleep):
        self.start, self.end = to_utc(start), to_utc(end)
        if self.start >= self.end:
            raise ConfigError(f"replay start {self.start:%Y-%m-%d %H:%M} is not before its end "
                              f"{self.end:%Y-%m-%d %H:%M}; swap them")
        if speed is not None and speed <= 0:
            raise ConfigError(f"--speed must be a positive factor of real time, got {speed}")
        self.speed, self.on_tick, self._sleep = speed, on_tick, sleep
        self._now = self.start
        self._extra = 0.0  # virtual seconds slept since the last jump
        self._tick(self._now)

    def now(self) -> pd.Timestamp:
        return self._now + pd.Timedelta(seconds=self._extra)

    def time(self) -> float:
        return self.now().value / 1e9

    def sleep(self, seconds: float) -> None:
        """Virtual: replay time moves on, the process does not wait."""
        if seconds > 0:
            self._extra += seconds
            self._tick(self.now())

    def advance(self, to: pd.Timestamp) -> bool:
        """Jump to ``to`` (after ``(to - now) / speed`` real seconds with a speed); False past the end."""
        to = to_utc(to)
        if to > self.end:
            return False
        if self.speed:
            self._sleep(max(0.0, (to - self.now()).total_seconds()) / self.speed)
        self._now, self._extra = max(to, self.now()), 0.0
        self._tick(self._now)
        return True

    def _tick(self, when: pd.Timestamp) -> None:
        if self.on_tick is not None:
            self.on_tick(when)
