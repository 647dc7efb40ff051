"""What a model is trained on (``TrainingData``) and what it makes of it for the fit (``TrainingArrays``).

``TrainingData`` holds the bars as they are, the timeframe that decides which bars are neighbours, their gap-free
segments (``data.bars.gap_free_runs``: the one gap rule), the fitted representation (None for models of per-bar
features), the share of the data held out for validation and the user's per-bar labels. Models turn it into
arrays with their ``training_arrays`` hook: windows cut from the segments (the default), longer sequences straight
from the segments (autoregressive), one series of every bar (garch), per-bar feature vectors (glow), labelled and
balanced windows (cgan). Nothing is cut into windows and glued back together.

Validation (``split``): the last ``val_fraction`` of the windows (``splits.chronological``), with the windows that
share bars with the first held-out window purged, so no bar is on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from marketsynth import splits
from marketsynth.data.bars import gap_free_runs
from marketsynth.errors import DataError, ModelError
from marketsynth.representation import Representation, Windows, windows_from_bars


class Split(NamedTuple):
    """Training windows, held-out windows (None without validation) and ``stop``: the first bar after the bars
    the training windows cover (``len(bars)`` without validation), so sequence models train on the same bars."""

    train: Windows
    val: Windows | None
    stop: int


@dataclass
class TrainingData:
    """Bars to train on, as ``api.train`` hands them to a model's hooks (see the module docstring)."""

    bars: pd.DataFrame
    timeframe: str | None = None  # bar length deciding adjacency (a week for trading days); None: the usual step
    representation: Representation | None = None  # fitted on ``bars``; None for models of per-bar features
    val_fraction: float = 0.0
    label_column: str | None = None
    bar_labels: np.ndarray | None = None  # one label per bar, from ``label_column``
    segments: list[slice] = field(init=False)  # row ranges of the gap-free runs, in order
    _encoded: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if "time" not in self.bars.columns:
            raise DataError("training bars need a 'time' column; use data.bars.as_bars")
        if self.bar_labels is not None and len(self.bar_labels) != len(self.bars):
            raise DataError(f"{len(self.bar_labels)} labels for {len(self.bars)} bars; label every bar")
        self.segments = gap_free_runs(self.bars["time"], self.timeframe)

    def encoded(self) -> np.ndarray:
        """Every bar's scaled features ``[T, F]``; row ``i`` is relative to close ``i - 1`` (so a segment's first
        row, relative to a close across a gap, only anchors the rest)."""
        if self.representation is None:
            raise ModelError("this model reads candle features, but no representation was given")
        if self._encoded is None:
            self._encoded = self.representation.encode(self.bars)
        return self._encoded

    def feature_runs(self, stop: int | None = None) -> list[slice]:
        """Rows of ``encoded()`` that follow their previous bar, per gap-free segment (each segment without its
        first bar), limited to rows before ``stop``; empty runs are left out."""
        stop = len(self.bars) if stop is None else int(stop)
        runs = [slice(s.start + 1, min(s.stop, stop)) for s in self.segments]
        return [r for r in runs if r.stop > r.start]

    def windows(self, seq_len: int) -> Windows:
        """Every window of ``seq_len`` bars inside a segment (``representation.windows_from_bars``)."""
        if self.representation is None:
            raise ModelError("this model reads candle windows, but no representation was given")
        return windows_from_bars(self.bars, self.representation, seq_len, timeframe=self.timeframe)

    def split(self, seq_len: int) -> Split:
        """Training and held-out windows (see the module docstring)."""
        cut = self.windows(seq_len)
        if not self.val_fraction:
            return Split(cut, None, len(self.bars))
        fold = splits.chronological(len(cut.features), 1 - self.val_fraction, purge=seq_len - 1)
        train = Windows(*(a[fold.train] for a in cut))
        val = Windows(*(a[fold.test] for a in cut))
        return Split(train, val, int(train.start_index[-1]) + seq_len)


@dataclass
class TrainingArrays:
    """What the fit reads: ``train`` items (``[N, L, F]`` windows or sequences the shared loop batches; for
    one-pass models whatever their ``fit_once`` reads), one condition per item (labels, positions in the day),
    held-out windows ``[M, seq_len, F]`` for the validation columns, and facts for the checkpoint's meta.
    ``count`` is the number of distinct items (balanced sampling repeats some); ``kind`` names them."""

    train: np.ndarray
    conditions: np.ndarray | None = None
    val: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    kind: str = "windows"
    count: int | None = None

    def __post_init__(self) -> None:
        if self.count is None:
            self.count = len(self.train)
        if self.conditions is not None and len(self.conditions) != len(self.train):
            raise ModelError(f"{len(self.conditions)} conditions for {len(self.train)} training items; pass one "
                             f"per item")

    def describe(self) -> str:
        """``1976 windows of 24 bars``, ``8736 bars``, ``6972 feature rows``."""
        array = np.asarray(self.train)
        if array.ndim == 3 and array.shape[1] > 1:
            return f"{self.count} {self.kind} of {array.shape[1]} bars"
        return f"{self.count} {self.kind}"
