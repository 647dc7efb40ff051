"""``sma-crossover``: act on crosses of a fast and a slow simple moving average of the close.

Long when the fast SMA crosses above the slow one; short (``allow_short``) or flat when it crosses below; flat
before the first cross. A cross needs both averages on two consecutive bars, so the first possible signal is on bar
``slow`` (0-based) and ``warmup`` is ``slow + 1`` bars. Once a cross has happened the target follows the side the
fast SMA is on; a bar where the two are exactly equal keeps the previous side (no cross).

Both paths compute the averages the same way, so they agree to the last bit: ``S`` is the running sum of
``close - close[0]`` (added left to right), ``sma_k[i] = (S[i] - S[i - k]) / k`` with ``S[-1] = 0``.
``signals`` uses ``numpy.cumsum``; ``on_bar`` keeps ``S`` and a ring of the last ``slow`` sums: O(1) per bar.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from marketsynth.errors import ConfigError
from marketsynth.trading.strategy import History, Signal, Strategy, signal_frame

_LONG, _FLAT, _SHORT = Signal(1.0), Signal(0.0), Signal(-1.0)


class SmaCrossover(Strategy):
    name = "sma-crossover"

    fast: int = 50
    slow: int = 200

    def validate(self) -> None:
        if self.fast < 1 or self.slow < 1:
            raise ConfigError(f"sma-crossover needs fast and slow of at least 1 bar, got fast={self.fast}, "
                              f"slow={self.slow}")
        if self.fast >= self.slow:
            raise ConfigError(f"sma-crossover needs fast < slow, got fast={self.fast}, slow={self.slow}; "
                              f"swap them")
        self._reset()

    @property
    def warmup(self) -> int:
        return self.slow + 1

    # ------------------------------------------------------------------------------------------ vectorised

    def signals(self, bars: pd.DataFrame) -> pd.DataFrame:
        close = np.asarray(bars["close"], dtype="float64")
        n = len(close)
        target = np.zeros(n)
        if n <= self.slow:
            return signal_frame(target)
        sums = np.empty(n + 1)
        sums[0] = 0.0
        np.cumsum(close - close[0], out=sums[1:])
        fast = (sums[self.fast:] - sums[: n + 1 - self.fast]) / self.fast  # fast[j] is the SMA at bar j + fast - 1
        slow = (sums[self.slow:] - sums[: n + 1 - self.slow]) / self.slow
        fast = fast[self.slow - self.fast:]  # both now start at bar slow - 1
        side = np.sign(fast - slow)
        if not side.all():  # equal averages keep the previous side
            side = _carry_forward_nonzero(side)
        crossed = (side[1:] != side[:-1]) & (side[:-1] != 0)  # a change of side: bar slow and later
        first = int(crossed.argmax())
        if not crossed[first]:
            return signal_frame(target)
        first += 1  # index into side; bar = first + slow - 1
        short = -1.0 if self.allow_short else 0.0
        target[first + self.slow - 1:] = np.where(side[first:] > 0, 1.0, short)
        return signal_frame(target)

    # ------------------------------------------------------------------------------------------ event

    def _reset(self) -> None:
        self._advance = _stepper(self.fast, self.slow, _SHORT if self.allow_short else _FLAT)

    def on_bar(self, history: History) -> Signal:
        return self._advance(history.close)


def _stepper(fast: int, slow: int, below: Signal):
    """The incremental state as a closure (cheaper than attributes): takes the closes so far, returns the target.

    Each call normally brings one more close; any other length (a first call part-way, a new history) rebuilds
    the state from all of them.
    """
    size = slow + 1
    ring = [0.0] * size  # ring[(i + 1) % size] holds S[i]; ring[0] starts as S[-1] = 0
    count, base, total, side, signal = 0, 0.0, 0.0, 0.0, _FLAT

    def advance(close: np.ndarray) -> Signal:
        nonlocal count, base, total, side, signal
        if len(close) != count + 1:
            count, base, total, side, signal = 0, close.item(0), 0.0, 0.0, _FLAT
            ring[:] = [0.0] * size
            for k in range(1, len(close)):
                advance(close[:k])
        total += close.item(-1) - base
        count += 1
        ring[count % size] = total
        if count >= slow:
            f = (total - ring[(count - fast) % size]) / fast
            s = (total - ring[(count - slow) % size]) / slow
            now = 1.0 if f > s else (-1.0 if f < s else side)
            if now != side:
                if side != 0.0:  # a cross (the first known side is not one)
                    signal = _LONG if now > 0 else below
                side = now
        return signal

    return advance


def _carry_forward_nonzero(side: np.ndarray) -> np.ndarray:
    """Replace zeros by the last non-zero value before them (zeros at the start stay zero)."""
    index = np.where(side != 0, np.arange(len(side)), -1)
    np.maximum.accumulate(index, out=index)
    return np.where(index >= 0, side[np.maximum(index, 0)], 0.0)
