"""``buy-and-hold``: long the whole equity from the first bar to the end."""

from __future__ import annotations

import numpy as np
import pandas as pd

from marketsynth.trading.strategy import History, Signal, Strategy, signal_frame

_LONG = Signal(1.0)


class BuyAndHold(Strategy):
    """Target +1 (all equity long) on every bar. With next-open fills it enters at the second bar's open."""

    name = "buy-and-hold"

    def signals(self, bars: pd.DataFrame) -> pd.DataFrame:
        return signal_frame(np.ones(len(bars)))

    def on_bar(self, history: History) -> Signal:
        return _LONG
