"""The one strategy interface, used unchanged by backtests (``marketsynth.trading.engine``) and live paper trading.

A strategy sees only the bars up to and including the current *closed* bar and answers with a target position:

- ``sizing = "fraction"`` (the default): ``target`` is a fraction of equity in −1…+1 (−1 all short, 0 flat, +1 all
  long); with leverage ``L`` the engine holds a notional of ``target × equity × L``.
- ``sizing = "quantity"``: ``target`` is a signed number of units of the base asset (e.g. 0.25 BTC).

``Signal(target, confidence=None)`` carries that answer; ``confidence`` is optional and only recorded.

Parameters are plain class attributes with defaults (``fast: int = 50``); ``Strategy(**params)`` sets them, coercing
each value to its default's type (so ``--param fast=10`` strings work); an unknown name is a ``ConfigError`` that
suggests the closest name. ``allow_short`` is a parameter every strategy has.

Two ways to produce signals, and a strategy may offer both (the engine checks they agree in the tests):

- **vectorised** ``signals(bars) -> DataFrame`` with columns ``target`` and ``confidence``, one row per bar, where row
  ``i`` is computed from ``bars[: i + 1]`` only (``assert_causal`` checks this); ``None`` means event-only;
- **event** ``on_bar(history) -> Signal``, called once per closed bar with a read-only ``History`` that ends at that
  bar: its arrays hold no later row, so reading the next bar raises ``IndexError`` (``LookAheadError`` from
  ``History.bar``).

Strategies that learn set ``learns = True`` and implement ``fit(bars)``; they are run walk-forward (fit on a fold's
training bars, trade its test bars). Strategies that need a trained generative model name its kind in
``needs_model`` and receive the checkpoint through ``attach_model``.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import numpy as np
import pandas as pd

from marketsynth.errors import ConfigError, DataError, MarketSynthError, did_you_mean

SIZINGS = ("fraction", "quantity")
_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}


class LookAheadError(MarketSynthError, IndexError):
    """A strategy asked for a bar after the current closed bar."""


class Signal(NamedTuple):
    """A target position (see the module docstring for its units) and an optional confidence."""

    target: float
    confidence: float | None = None


FLAT = Signal(0.0)


class History:
    """Read-only bars up to and including the current closed bar.

    ``open, high, low, close, volume`` are float64 arrays and ``time`` a ``datetime64[us]`` (UTC) array, each of
    length ``len(history)``, the last element being the current bar; they are read-only views, so indexing past the
    end raises ``IndexError``. ``bar(i)`` returns one bar as a dict (negative ``i`` counts from the current bar) and
    raises ``LookAheadError`` for a bar after it. ``frame()`` returns the bars as a (copied) bars frame.
    """

    __slots__ = ("_n", "_open", "_high", "_low", "_close", "_volume", "_time")

    def __init__(self, bars: pd.DataFrame, n: int | None = None):
        missing = [c for c in ("time", "open", "high", "low", "close", "volume") if c not in bars.columns]
        if missing:
            raise DataError(f"bars lack column(s) {', '.join(missing)}; expected time, open, high, low, close, volume")
        self._time = _readonly(_utc_naive_times(bars["time"]))
        for name in ("open", "high", "low", "close", "volume"):
            setattr(self, f"_{name}", _readonly(np.asarray(bars[name], dtype="float64")))
        self._n = len(bars) if n is None else int(n)

    # The engine moves the end forward with ``_n``; nothing public can.
    def __len__(self) -> int:
        return self._n

    @property
    def open(self) -> np.ndarray:
        return self._open[: self._n]

    @property
    def high(self) -> np.ndarray:
        return self._high[: self._n]

    @property
    def low(self) -> np.ndarray:
        return self._low[: self._n]

    @property
    def close(self) -> np.ndarray:
        return self._close[: self._n]

    @property
    def volume(self) -> np.ndarray:
        return self._volume[: self._n]

    @property
    def time(self) -> np.ndarray:
        return self._time[: self._n]

    @property
    def now(self) -> pd.Timestamp:
        """The open time of the current (last closed) bar."""
        return pd.Timestamp(self._time[self._n - 1]).tz_localize("UTC")

    def bar(self, i: int) -> dict[str, Any]:
        """Bar ``i`` (0 = the first, −1 = the current one); a ``LookAheadError`` for any bar after the current one."""
        index = i + self._n if i < 0 else i
        if index >= self._n:
            raise LookAheadError(f"bar {i} is in the future: the history ends at bar {self._n - 1}, the current "
                                 f"closed bar; a strategy only sees bars up to it")
        if index < 0:
            raise IndexError(f"bar {i} is before the first bar (the history holds {self._n})")
        return {"time": pd.Timestamp(self._time[index]).tz_localize("UTC"), "open": float(self._open[index]),
                "high": float(self._high[index]), "low": float(self._low[index]),
                "close": float(self._close[index]), "volume": float(self._volume[index])}

    def frame(self) -> pd.DataFrame:
        """The bars so far as a bars frame (a copy: ``time`` UTC, OHLCV float64)."""
        n = self._n
        return pd.DataFrame({
            "time": pd.to_datetime(self._time[:n]).tz_localize("UTC"),
            "open": self._open[:n].copy(), "high": self._high[:n].copy(), "low": self._low[:n].copy(),
            "close": self._close[:n].copy(), "volume": self._volume[:n].copy(),
        })


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)
    array.flags.writeable = False
    return array


def _utc_naive_times(times: pd.Series) -> np.ndarray:
    times = pd.to_datetime(times, utc=True)
    return times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")


class Strategy:
    """Base class of every strategy; see the module docstring for the contract.

    Subclasses set ``name`` and declare parameters as annotated class attributes with defaults (``bool``, ``int``,
    ``float`` or ``str``)::

        class Momentum(Strategy):
            name = "momentum"
            lookback: int = 24

            def on_bar(self, history):
                c = history.close
                if len(c) <= self.lookback:
                    return FLAT
                return Signal(1.0 if c[-1] > c[-1 - self.lookback] else 0.0)
    """

    name: ClassVar[str] = "strategy"
    sizing: ClassVar[str] = "fraction"
    learns: ClassVar[bool] = False
    needs_model: ClassVar[str | None] = None

    allow_short: bool = False

    def __init__(self, **params: Any):
        names = self.parameter_names()
        for key, value in params.items():
            if key not in names:
                hint = did_you_mean(key, names)
                raise ConfigError(f"unknown parameter '{key}' for {self.name}{hint}; its parameters: "
                                  f"{', '.join(names)}")
            setattr(self, key, _coerce(value, getattr(type(self), key), key, self.name))
        if self.sizing not in SIZINGS:
            raise ConfigError(f"{type(self).__name__}.sizing is '{self.sizing}'; use one of {', '.join(SIZINGS)}")
        self.validate()

    @classmethod
    def parameter_names(cls) -> list[str]:
        """Public annotated class attributes with a default, own ones first then inherited ones (``allow_short``)."""
        names: list[str] = []
        for klass in cls.__mro__:
            for key, annotation in vars(klass).get("__annotations__", {}).items():
                if key.startswith("_") or key in names or "ClassVar" in str(annotation):
                    continue
                if hasattr(cls, key) and isinstance(getattr(cls, key), bool | int | float | str):
                    names.append(key)
        return names

    def params(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.parameter_names()}

    def validate(self) -> None:
        """Check parameter combinations; raise ConfigError. Called by ``__init__`` after the values are set."""

    @property
    def warmup(self) -> int:
        """Bars needed before the first meaningful signal; a backtest on fewer bars is a DataError."""
        return 1

    def fit(self, bars: pd.DataFrame) -> None:
        """Learn from training bars (strategies with ``learns = True``); the default does nothing."""

    def attach_model(self, checkpoint: Any) -> None:
        """Receive the trained model a strategy with ``needs_model`` uses."""
        if self.needs_model is None:
            raise ConfigError(f"strategy {self.name} uses no model; drop --model")

    def signals(self, bars: pd.DataFrame) -> pd.DataFrame | None:
        """Targets for every bar at once (columns ``target``, ``confidence``); ``None``: event-only strategy."""
        return None

    def on_bar(self, history: History) -> Signal:
        """The target after the current closed bar. The default evaluates ``signals`` on the history (correct, but
        O(n) per bar: fine for live trading, slow for long backtests, which use ``signals`` directly)."""
        table = self.signals(history.frame())
        if table is None:
            raise NotImplementedError(f"strategy {self.name} implements neither on_bar nor signals")
        target, confidence = table["target"].iat[-1], table["confidence"].iat[-1]
        return Signal(float(target), None if pd.isna(confidence) else float(confidence))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({inner})"


def _coerce(value: Any, default: Any, key: str, owner: str) -> Any:
    kind = type(default)
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if kind is int:
            if isinstance(value, bool):
                raise ValueError
            number = float(value) if isinstance(value, str) and "." in value else value
            if isinstance(number, float):
                if not number.is_integer():
                    raise ValueError
                return int(number)
            return int(number)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        expected = {bool: "true or false", int: "an integer", float: "a number"}.get(kind, "a string")
        raise ConfigError(f"parameter {key} of {owner} must be {expected}, got {value!r}") from None


def signal_frame(target: np.ndarray, confidence: np.ndarray | None = None, index: pd.Index | None = None
                 ) -> pd.DataFrame:
    """A ``signals`` result: float64 ``target`` and ``confidence`` (NaN where there is none)."""
    target = np.asarray(target, dtype="float64")
    conf = np.full(len(target), np.nan) if confidence is None else np.asarray(confidence, dtype="float64")
    return pd.DataFrame({"target": target, "confidence": conf}, index=index, copy=False)


def assert_causal(strategy: Strategy, bars: pd.DataFrame, cuts: list[int] | None = None) -> None:
    """Test helper: ``signals`` on each prefix ``bars[:cut]`` equals the first ``cut`` rows of the full run.

    Catches look-ahead in a vectorised strategy (a centred window, a ``shift(-1)``, a fit on the whole frame).
    Raises AssertionError naming the first cut and row that differ.
    """
    full = strategy.signals(bars)
    if full is None:
        raise AssertionError(f"strategy {strategy.name} has no vectorised signals to check")
    if len(full) != len(bars):
        raise AssertionError(f"signals returned {len(full)} rows for {len(bars)} bars")
    n = len(bars)
    cuts = cuts or sorted({max(1, strategy.warmup - 1), strategy.warmup, strategy.warmup + 1, n // 3, n // 2,
                           (2 * n) // 3, n - 1})
    for cut in cuts:
        if not 0 < cut <= n:
            continue
        part = strategy.signals(bars.iloc[:cut].reset_index(drop=True))
        for column in ("target", "confidence"):
            a = np.asarray(part[column], dtype="float64")
            b = np.asarray(full[column], dtype="float64")[:cut]
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            if not same.all():
                row = int(np.flatnonzero(~same)[0])
                raise AssertionError(f"{strategy.name}: {column} at row {row} is {a[row]} on the first {cut} bars "
                                     f"but {b[row]} on all {n}: the signal reads later bars")


def assert_event_matches_signals(strategy_factory, bars: pd.DataFrame) -> None:
    """Test helper: ``on_bar`` called bar by bar gives exactly the ``signals`` targets (fresh strategy each way)."""
    table = strategy_factory().signals(bars)
    strategy = strategy_factory()
    history = History(bars, 0)
    targets = np.empty(len(bars))
    for i in range(len(bars)):
        history._n = i + 1
        targets[i] = strategy.on_bar(history).target
    expected = np.nan_to_num(np.asarray(table["target"], dtype="float64"))
    differ = np.flatnonzero(targets != expected)
    if len(differ):
        row = int(differ[0])
        raise AssertionError(f"{strategy.name}: on_bar gives {targets[row]} at bar {row}, signals {expected[row]}")
