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
        side = np.where(fast > slow, 1.0, np.where(fast < slow, -1.0, 0.0))
        side = _carry_forward_nonzero(side)
        crossed = (side[1:] != side[:-1]) & (side[:-1] != 0)  # a change of side: bar slow and later
        if not crossed.any():
            return signal_frame(target)
        first = int(np.flatnonzero(crossed)[0]) + 1  # index into side; bar = first + slow - 1
        low = -1.0 if self.allow_short else 0.0
        target[first + self.slow - 1:] = np.where(side[first:] > 0, 1.0, low)
        return signal_frame(target)

    # ------------------------------------------------------------------------------------------ event

    def _reset(self) -> None:
        self._count = 0  # bars seen
        self._base = 0.0
        self._sum = 0.0
        self._ring = [0.0] * (self.slow + 1)  # S[i - k] for k <= slow; ring[(i + 1) % (slow + 1)] is S[i]
        self._side = 0.0
        self._crossed = False

    def on_bar(self, history: History) -> Signal:
        n = len(history)
        if n != self._count + 1:
            self._catch_up(history)
            return self._signal()
        price = history.close[-1]
        self._step(price)
        return self._signal()

    def _catch_up(self, history: History) -> None:
        """Rebuild the state from the whole history (first call, or a history that is not the next bar)."""
        self._reset()
        close = history.close
        self._base = float(close[0]) if len(close) else 0.0
        for price in close:
            self._step(price)

    def _step(self, price: float) -> None:
        if self._count == 0:
            self._base = float(price)
        ring, size = self._ring, self.slow + 1
        self._sum += price - self._base
        self._count += 1
        i = self._count  # S index shifted by one: ring[i % size] holds S[i - 1]
        ring[i % size] = self._sum
        if i < self.slow:
            return
        fast = (self._sum - ring[(i - self.fast) % size]) / self.fast
        slow = (self._sum - ring[(i - self.slow) % size]) / self.slow
        side = 1.0 if fast > slow else (-1.0 if fast < slow else self._side)
        if side != self._side and self._side != 0.0:
            self._crossed = True
        self._side = side

    def _signal(self) -> Signal:
        if not self._crossed:
            return _FLAT
        if self._side > 0:
            return _LONG
        return _SHORT if self.allow_short else _FLAT


def _carry_forward_nonzero(side: np.ndarray) -> np.ndarray:
    """Replace zeros by the last non-zero value before them (zeros at the start stay zero)."""
    index = np.where(side != 0, np.arange(len(side)), -1)
    np.maximum.accumulate(index, out=index)
    return np.where(index >= 0, side[np.maximum(index, 0)], 0.0)
