"""Every train/test split in marketsynth: chronological, interleaved and walk-forward.

Splits work on positions ``0 … n-1`` of anything in time order (bars, windows) and return slices or boolean
masks; callers index their own arrays or frames with them (``bars.iloc[fold.train]``). Nothing here knows about
candles, models or strategies.

- ``chronological``: the first part trains, the last part is held out (does it carry over to a later period?).
- ``interleaved``: blocks of consecutive items, a share of them held out and spread evenly over the whole period,
  so both parts see the same market regimes (does it capture this period?).
- ``walk_forward``: consecutive test periods, each trained on what came before it (expanding) or on a fixed number
  of bars before it (rolling) — how a strategy or model would have been used in real time.

Leakage guards, in items: ``purge`` drops the last items of a training period before its test period (their windows
or labels would reach into it); ``embargo`` adds a further gap of that many items after the purge, for serially
correlated data. No training item is ever at or after its test period's first item minus ``purge + embargo``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marketsynth.errors import ConfigError, DataError


@dataclass(frozen=True)
class Fold:
    """One split: ``train`` and ``test`` are slices of positions (``test`` always after ``train``)."""

    index: int
    train: slice
    test: slice

    @property
    def train_size(self) -> int:
        return self.train.stop - self.train.start

    @property
    def test_size(self) -> int:
        return self.test.stop - self.test.start

    @property
    def gap(self) -> int:
        """Items between the end of training and the start of the test period (purge + embargo)."""
        return self.test.start - self.train.stop

    def to_dict(self) -> dict[str, int]:
        return {"fold": self.index, "train_start": self.train.start, "train_stop": self.train.stop,
                "test_start": self.test.start, "test_stop": self.test.stop}


def chronological(n: int, train_fraction: float = 0.8, *, purge: int = 0, embargo: int = 0,
                  min_train: int = 1, min_test: int = 1) -> Fold:
    """The first ``train_fraction`` of ``n`` items trains (less ``purge + embargo`` at its end), the rest is
    the test period. The boundary is ``round(n * train_fraction)``."""
    if not 0 < train_fraction < 1:
        raise ConfigError(f"the training fraction must be between 0 and 1 (exclusive), got {train_fraction}")
    _check_gaps(purge, embargo)
    cut = int(round(n * train_fraction))
    fold = Fold(0, slice(0, max(0, cut - purge - embargo)), slice(cut, n))
    if fold.train_size < min_train or fold.test_size < min_test:
        raise DataError(f"{n} items are too few to split {train_fraction:.0%}/{1 - train_fraction:.0%} with a gap "
                        f"of {purge + embargo}: need at least {min_train} to train and {min_test} to test")
    return fold


def interleaved(n: int, block: int, heldout_fraction: float = 0.2) -> np.ndarray:
    """``[n]`` bool, True for held-out items: items are grouped in blocks of ``block`` consecutive ones and block
    ``b`` is held out when ``floor((b + 1) f) > floor(b f)`` for ``f = heldout_fraction`` — for 0.2 every fifth
    block (the 5th, 10th, …), for 0.5 every other one (the odd blocks). With fewer than ``1 / f`` blocks the last
    block is held out."""
    if block < 1:
        raise ConfigError(f"the block length must be at least 1, got {block}")
    if not 0 < heldout_fraction < 1:
        raise ConfigError(f"the held-out fraction must be between 0 and 1 (exclusive), got {heldout_fraction}")
    blocks = np.arange(n) // block
    held = np.floor((blocks + 1) * heldout_fraction) > np.floor(blocks * heldout_fraction)
    if n and not held.any():
        held = blocks == blocks[-1]
    return held


def near(mask: np.ndarray, before: int, after: int | None = None) -> np.ndarray:
    """``[n]`` bool: items within ``before`` positions before or ``after`` (default ``before``) positions after a
    True item of ``mask`` (the True items included) — the training items to purge around held-out ones when items
    are overlapping windows."""
    after = before if after is None else after
    mask = np.asarray(mask, dtype=bool)
    out = mask.copy()
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return out
    marks = np.zeros(len(mask) + 1, dtype=np.int64)  # difference array over the covered ranges
    np.add.at(marks, np.maximum(idx - before, 0), 1)
    np.add.at(marks, np.minimum(idx + after + 1, len(mask)), -1)
    return out | (np.cumsum(marks)[:-1] > 0)


def walk_forward(n: int, folds: int, *, test_size: int | None = None, train_size: int | None = None,
                 purge: int = 0, embargo: int = 0, min_train: int = 1) -> list[Fold]:
    """``folds`` consecutive test periods of ``test_size`` items ending at the last item, each trained on the items
    before it less ``purge + embargo``: all of them (expanding, ``train_size=None``) or the last ``train_size``
    (rolling). ``test_size`` defaults to ``n // (folds + 1)``, so the first training period is as long as a test
    period. Test periods never overlap and every training period ends before its test period begins."""
    if folds < 1:
        raise ConfigError(f"walk-forward needs at least 1 fold, got {folds}")
    _check_gaps(purge, embargo)
    gap = purge + embargo
    test_size = n // (folds + 1) if test_size is None else int(test_size)
    if test_size < 1:
        raise DataError(f"{n} items are too few for {folds} walk-forward folds")
    first_test = n - folds * test_size
    result = []
    for k in range(folds):
        start = first_test + k * test_size
        stop = start - gap
        begin = 0 if train_size is None else max(0, stop - int(train_size))
        fold = Fold(k, slice(begin, max(begin, stop)), slice(start, start + test_size))
        if fold.train_size < max(1, min_train) or (train_size is not None and fold.train_size < train_size):
            raise DataError(f"{n} items are too few for {folds} walk-forward folds of {test_size} with a gap of "
                            f"{gap}: fold {k + 1} would train on {fold.train_size} items (need "
                            f"{max(min_train, train_size or 1)}); use fewer folds or a shorter test period")
        result.append(fold)
    return result


def _check_gaps(purge: int, embargo: int) -> None:
    if purge < 0 or embargo < 0:
        raise ConfigError(f"purge and embargo must be 0 or more items, got {purge} and {embargo}")
