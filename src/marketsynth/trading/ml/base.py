"""What the learned direction strategies share: probability → target, the event path, direction accuracy, saving.

A learned strategy estimates ``p``, the probability that the close ``horizon`` bars ahead is above the current
close, from bars up to the current one. The target position follows from ``p``:

- long when ``p > threshold``; short when ``p < 1 - threshold`` and ``allow_short``; flat otherwise (and flat
  before the strategy has enough bars for an estimate, where ``p`` is NaN);
- confidence sizing (``confidence_sizing``, on by default): the position is ``min(1, |p - 0.5| / (full_size_at -
  0.5))`` of equity, so a call just past the threshold is small and one at ``p >= full_size_at`` (or ``<= 1 -
  full_size_at``) takes the whole equity; without it every position is the whole equity;
- the signal's ``confidence`` is ``max(p, 1 - p)``, the estimated chance that the direction called is right.

Subclasses implement ``_fit(bars, extra)``, ``_probabilities(bars, last_only)``, ``_state()``/``_restore()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from marketsynth.compute import torch_threads
from marketsynth.errors import ConfigError, DataError, ModelError
from marketsynth.trading.ml import persist
from marketsynth.trading.ml.samples import bar_step, check_bars, forward_returns
from marketsynth.trading.strategy import History, Signal, Strategy, signal_frame


class DirectionStrategy(Strategy):
    """Base of ``gbm`` and ``ensemble``: parameters for the label and for turning ``p`` into a target."""

    learns: ClassVar[bool] = True

    horizon: int = 1
    threshold: float = 0.55
    confidence_sizing: bool = True
    full_size_at: float = 0.7
    seed: int = 0
    threads: int = 1

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._fitted = False
        self._step: pd.Timedelta | None = None
        self.training_summary: dict[str, Any] = {}

    def validate(self) -> None:
        if self.horizon < 1:
            raise ConfigError(f"{self.name}: horizon must be at least 1 bar, got {self.horizon}")
        if not 0.5 <= self.threshold < 1:
            raise ConfigError(f"{self.name}: threshold must be in [0.5, 1) (long above it, short below 1 - it), "
                              f"got {self.threshold}")
        if not 0.5 < self.full_size_at <= 1:
            raise ConfigError(f"{self.name}: full_size_at must be in (0.5, 1], got {self.full_size_at}")
        if self.seed < 0:
            raise ConfigError(f"{self.name}: seed must be 0 or more, got {self.seed}")
        if self.threads < 0:
            raise ConfigError(f"{self.name}: threads must be 0 (the libraries' default) or more, got {self.threads}")

    @property
    def fitted(self) -> bool:
        return self._fitted

    # ------------------------------------------------------------------------------------------ learning
    def fit(self, bars: pd.DataFrame, extra: list[pd.DataFrame] | None = None) -> None:
        """Learn from ``bars`` (and ``extra`` bars frames of the same bar length, e.g. synthetic paths: see the
        subclass docstring for where their samples go; never into a held-out fold)."""
        check_bars(bars)
        if extra is None:
            extra = []
        if isinstance(extra, pd.DataFrame) or not isinstance(extra, list | tuple):
            raise ConfigError(f"{self.name}: extra must be a list of bars frames (e.g. synthetic paths), got "
                              f"{type(extra).__name__}")
        step = bar_step(bars)
        for i, frame in enumerate(extra):
            check_bars(frame, f"extra[{i}]")
            try:
                frame_step = bar_step(frame)
            except DataError as exc:
                raise DataError(f"extra[{i}]: {exc}") from None
            if frame_step != step:
                raise DataError(f"extra[{i}] has bars of {frame_step} but the training bars are {step} apart; give "
                                f"extra frames with the training bars' bar length")
        self._fitted = False
        with self.cpu_threads():
            self._fit(bars.reset_index(drop=True), [f.reset_index(drop=True) for f in extra])
        self._fitted = True

    def _fit(self, bars: pd.DataFrame, extra: list[pd.DataFrame]) -> None:
        raise NotImplementedError

    def _probabilities(self, bars: pd.DataFrame, last_only: bool) -> np.ndarray:
        """``[len(bars)]`` P(up over ``horizon``) per bar, NaN where there is no estimate (with ``last_only``
        only the last element needs to be right)."""
        raise NotImplementedError

    @contextmanager
    def cpu_threads(self) -> Iterator[None]:
        """Run with ``threads`` CPU threads in OpenMP/BLAS (scikit-learn's boosting) and torch (0: their own
        defaults). One is the default: these models are small, and on shared cores OpenMP's threads mostly wait
        for each other (gbm fitted 2 000 bars in 9 s with two threads on two busy cores, 0.7 s with one)."""
        if not self.threads:
            yield
            return
        with threadpool_limits(self.threads), torch_threads(self.threads):
            yield

    # ------------------------------------------------------------------------------------------ signals
    def probabilities(self, bars: pd.DataFrame) -> np.ndarray:
        """P(close ``horizon`` bars later > close) for every bar, from bars up to it; NaN during the warm-up."""
        self._require_fitted()
        check_bars(bars)
        bars = bars.reset_index(drop=True)
        if len(bars) < self.warmup:
            return np.full(len(bars), np.nan)
        with self.cpu_threads():
            return self._probabilities(bars, last_only=False)

    def signals(self, bars: pd.DataFrame) -> pd.DataFrame:
        target, confidence = self.targets(self.probabilities(bars))
        return signal_frame(target, confidence, index=bars.index)

    def on_bar(self, history: History) -> Signal:
        """The last bar's signal; computes the features of the whole history but predicts only what it needs."""
        self._require_fitted()
        if len(history) < self.warmup:
            return Signal(0.0)
        with self.cpu_threads():
            p = self._probabilities(history.frame(), last_only=True)[-1:]
        target, confidence = self.targets(p)
        return Signal(float(target[0]), None if np.isnan(confidence[0]) else float(confidence[0]))

    def targets(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(target, confidence)`` from probabilities (module docstring); NaN ``p`` gives 0 and NaN."""
        p = np.asarray(p, dtype=np.float64)
        known = np.isfinite(p)
        edge = np.abs(np.where(known, p, 0.5) - 0.5)
        size = np.minimum(1.0, edge / (self.full_size_at - 0.5)) if self.confidence_sizing else np.ones(len(p))
        up = known & (p > self.threshold)
        down = known & (p < 1.0 - self.threshold) & bool(self.allow_short)
        target = np.where(up, size, np.where(down, -size, 0.0))
        confidence = np.where(known, 0.5 + edge, np.nan)
        return target, confidence

    # ------------------------------------------------------------------------------------------ evaluation
    def direction_calls(self, bars: pd.DataFrame, start: int = 0) -> tuple[int, int]:
        """``(correct, calls)``: bars at or after row ``start`` where the strategy holds a position and the
        ``horizon``-bar return after the bar is known and non-zero (``calls``), and of those the ones where the
        position's side matches the return's sign (``correct``). Rows before ``start`` only serve as history."""
        table = self.signals(bars)
        target = table["target"].to_numpy()
        returns = forward_returns(bars.reset_index(drop=True), self.horizon, self._step)
        rows = np.arange(len(bars)) >= start
        called = rows & (target != 0) & np.isfinite(returns) & (returns != 0)
        correct = called & (np.sign(target) == np.sign(returns))
        return int(correct.sum()), int(called.sum())

    def direction_accuracy(self, bars: pd.DataFrame, start: int = 0) -> float:
        """Share of correct direction calls (``direction_calls``; with ``horizon = 1`` the next bar's
        close-to-close direction) among the bars where the strategy takes a position; NaN when it takes none."""
        correct, calls = self.direction_calls(bars, start)
        return correct / calls if calls else float("nan")

    # ------------------------------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the fitted strategy as a folder of JSON + safetensors (``marketsynth.trading.ml.persist``)."""
        self._require_fitted()
        state, arrays = self._state()
        state = {"step_seconds": self._step.total_seconds(), "training": self.training_summary, **state}
        return persist.write_strategy(path, self.name, self.params(), state, arrays, {"seed": self.seed})

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> DirectionStrategy:
        """A fitted strategy from a folder written by ``save``; ``overrides`` change parameters that do not
        affect what was fitted (``threshold``, ``allow_short``, ``device``...)."""
        params, state, arrays = persist.read_strategy(path, cls.name)
        try:
            strategy = cls(**{**params, **overrides})
        except ConfigError as exc:
            raise ModelError(f"{path}: the saved parameters do not fit this version ({exc})") from exc
        try:
            strategy._step = pd.Timedelta(seconds=float(state["step_seconds"]))
            strategy._restore(state, arrays)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path} is malformed ({type(exc).__name__}: {exc}); fit and save it again") from exc
        strategy.training_summary = dict(state.get("training", {}))
        strategy._fitted = True
        return strategy

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        raise NotImplementedError

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def _require_fitted(self) -> None:
        if not self._fitted:
            raise ModelError(f"strategy {self.name} is not fitted; call fit(bars) first (a backtest runs it "
                             f"walk-forward) or load a saved one")


def check_counts(name: str, counts: dict[str, int], minimum: dict[str, int], hint: str) -> None:
    """DataError naming the first part of the training data that is too small."""
    for part, need in minimum.items():
        if counts.get(part, 0) < need:
            raise DataError(f"{name} has {counts.get(part, 0)} labelled {part} samples, needs at least {need}; "
                            f"{hint}")
