"""Market-regime labels for windows of candles, and the scenario statistics that describe each regime.

A window's **price path** is its first open followed by its closes: ``p_0 = open_1, p_t = close_t`` (t = 1..L).
From it:

* **return** ``p_L / p_0 - 1``;
* **maximum drawdown** ``max_t (1 - p_t / max_{s<=t} p_s)``, the deepest fall from a running peak, as a positive
  fraction (0.3 = a 30% fall; 0 for a path that never falls);
* **crash duration**: the bars from the peak to the trough of that maximum drawdown (``t_trough - t_peak``; the
  latest peak before the trough when it repeats; 0 without a drawdown).

Automatic labels (``method = "quantiles"``), first rule that matches wins:

1. ``crash``: maximum drawdown at least ``crash_drawdown`` (default: the drawdown that only the worst ``q_crash``
   = 10% of the training windows reach) and above 0;
2. ``bear``: return at most ``bear_return`` (default: the ``q_bear`` = 30% quantile of the returns) and below 0;
3. ``bull``: return at least ``bull_return`` (default: the ``q_bull`` = 70% quantile) and above 0;
4. ``sideways``: the rest.

Bear needs a falling window and bull a rising one whatever the quantiles say, so a market that only rose has no
bear windows rather than "bear" windows that went up. The thresholds are fitted on the *training* windows, stored
as absolute numbers with the model (JSON) and reused unchanged to label any other windows, so generation and
reports use the same definitions. Giving ``crash_drawdown``/``bear_return``/``bull_return`` fixes them instead.

User labels (``method = "column"``): one label per bar in a column of the candle file; a window takes the label
most of its bars carry (a tie goes to the tied label that occurs latest in the window). Regimes are the labels
that at least one window got, sorted by name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from marketsynth.errors import ConfigError, DataError
from marketsynth.representation.windows import take_windows

AUTO_REGIMES = ("bull", "bear", "crash", "sideways")  # label index = position (the model's embedding rows)
STAT_KEYS = ("windows", "mean_return", "max_drawdown", "crash_duration")


# ---- price paths and their statistics ------------------------------------------------------------------------
def price_paths(opens: np.ndarray, closes: np.ndarray) -> np.ndarray:
    """``[n, L + 1]`` paths from each window's first open ``[n]`` and its closes ``[n, L]``."""
    opens, closes = np.asarray(opens, np.float64), np.asarray(closes, np.float64)
    if closes.ndim != 2 or opens.shape != (len(closes),):
        raise DataError(f"price paths need opens [n] and closes [n, L], got {opens.shape} and {closes.shape}")
    return np.concatenate([opens[:, None], closes], axis=1)


def candle_paths(candles: np.ndarray) -> np.ndarray:
    """Paths of candle windows ``[n, L, 5]`` (open, high, low, close, volume)."""
    candles = np.asarray(candles, np.float64)
    return price_paths(candles[:, 0, 0], candles[:, :, 3])


def bar_paths(bars: pd.DataFrame, starts: np.ndarray, seq_len: int) -> np.ndarray:
    """Paths of the windows that hold bar rows ``s .. s + seq_len - 1`` for each start row ``s``."""
    starts = np.asarray(starts, dtype=np.int64)
    closes = bars["close"].to_numpy(np.float64)
    return price_paths(bars["open"].to_numpy(np.float64)[starts], take_windows(closes, starts, seq_len))


def window_returns(paths: np.ndarray) -> np.ndarray:
    return paths[:, -1] / paths[:, 0] - 1.0


def max_drawdowns(paths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(maximum drawdown as a positive fraction, crash duration in bars) of each path ``[n, L + 1]``."""
    paths = np.asarray(paths, np.float64)
    peaks = np.maximum.accumulate(paths, axis=1)
    falls = 1.0 - paths / peaks
    trough = falls.argmax(axis=1)
    positions = np.where(paths == peaks, np.arange(paths.shape[1]), 0)
    peak_at = np.maximum.accumulate(positions, axis=1)  # index of the running peak at each step
    rows = np.arange(len(paths))
    return falls[rows, trough], (trough - peak_at[rows, trough]).astype(np.int64)


def regime_stats(paths: np.ndarray, labels: np.ndarray, names) -> dict[str, dict[str, float]]:
    """Per regime: windows, mean return, mean maximum drawdown, mean crash duration (bars); regimes without
    windows are left out."""
    labels = np.asarray(labels, dtype=np.int64)
    returns = window_returns(paths)
    depth, duration = max_drawdowns(paths)
    out = {}
    for index, name in enumerate(names):
        mask = labels == index
        if mask.any():
            out[str(name)] = {"windows": int(mask.sum()), "mean_return": float(returns[mask].mean()),
                              "max_drawdown": float(depth[mask].mean()),
                              "crash_duration": float(duration[mask].mean())}
    return out


# ---- the definition ------------------------------------------------------------------------------------------
@dataclass
class RegimeDefinition:
    """How windows were labelled; ``to_dict`` is what a checkpoint stores."""

    method: str = "quantiles"  # "quantiles" (automatic) or "column" (user labels per bar)
    names: tuple[str, ...] = AUTO_REGIMES
    q_crash: float = 0.10
    q_bear: float = 0.30
    q_bull: float = 0.70
    crash_drawdown: float | None = None  # fitted (or given) absolute thresholds
    bear_return: float | None = None
    bull_return: float | None = None
    column: str | None = None

    def __post_init__(self) -> None:
        self.names = tuple(str(name) for name in self.names)
        if self.method not in ("quantiles", "column"):
            raise ConfigError(f"unknown regime labelling '{self.method}'; use quantiles or a label column")
        for key in ("q_crash", "q_bear", "q_bull"):
            value = getattr(self, key)
            if not (isinstance(value, int | float) and 0 < value < 1):
                raise ConfigError(f"regime option {key} must be a fraction between 0 and 1, got {value!r}")
        if self.q_bear >= self.q_bull:
            raise ConfigError(f"regime option q_bear ({self.q_bear}) must be below q_bull ({self.q_bull})")

    @property
    def fitted(self) -> bool:
        return self.method == "column" or None not in (self.crash_drawdown, self.bear_return, self.bull_return)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "names": list(self.names)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RegimeDefinition:
        return cls(**values)

    def fit(self, paths: np.ndarray) -> RegimeDefinition:
        """Fill the thresholds not given from the quantiles of these (training) windows."""
        if self.method != "quantiles":
            return self
        if len(paths) == 0:
            raise DataError("no windows to fit regime thresholds on")
        depth, _ = max_drawdowns(paths)
        returns = window_returns(paths)
        if self.crash_drawdown is None:
            self.crash_drawdown = float(np.quantile(depth, 1 - self.q_crash))
        if self.bear_return is None:
            self.bear_return = float(np.quantile(returns, self.q_bear))
        if self.bull_return is None:
            self.bull_return = float(np.quantile(returns, self.q_bull))
        return self

    def label(self, paths: np.ndarray) -> np.ndarray:
        """Label index (into ``names``) of each path, by the rules in the module docstring."""
        if self.method != "quantiles":
            raise ConfigError(f"these regimes come from the label column '{self.column}', not from prices")
        if not self.fitted:
            raise ConfigError("regime thresholds are not fitted yet; fit them on the training windows first")
        depth, _ = max_drawdowns(paths)
        returns = window_returns(paths)
        index = {name: i for i, name in enumerate(AUTO_REGIMES)}
        labels = np.full(len(paths), index["sideways"], dtype=np.int64)
        labels[(returns >= self.bull_return) & (returns > 0)] = index["bull"]
        labels[(returns <= self.bear_return) & (returns < 0)] = index["bear"]
        labels[(depth >= self.crash_drawdown) & (depth > 0)] = index["crash"]
        return labels

    def describe(self) -> str:
        if self.method == "column":
            return f"labels from column '{self.column}' (majority of each window's bars)"
        return (f"crash: max drawdown >= {self.crash_drawdown:.2%} (worst {self.q_crash:.0%}); bear: return <= "
                f"{self.bear_return:+.2%} (q{self.q_bear:.0%}); bull: return >= {self.bull_return:+.2%} "
                f"(q{self.q_bull:.0%}); sideways: the rest")


def auto_labels(paths: np.ndarray, **options) -> tuple[RegimeDefinition, np.ndarray]:
    """Fit automatic thresholds on these training windows and label them: (definition, label indices)."""
    definition = RegimeDefinition(**options).fit(paths)
    return definition, definition.label(paths)


# ---- user labels ---------------------------------------------------------------------------------------------
def column_labels(bar_labels, starts: np.ndarray, seq_len: int, column: str,
                  names: tuple[str, ...] | None = None) -> tuple[RegimeDefinition, np.ndarray]:
    """Window labels from per-bar labels: the majority of the window's bars (ties: the latest one).

    ``names`` fixes the regime list (a resumed model); otherwise it is every label a window got, sorted."""
    values = pd.Series(bar_labels, dtype="object")
    if values.isna().any():
        raise DataError(f"label column '{column}' has {int(values.isna().sum())} empty value(s); label every bar")
    values = values.astype(str).to_numpy()
    vocabulary, codes = np.unique(values, return_inverse=True)
    starts = np.asarray(starts, dtype=np.int64)
    window_codes = take_windows(codes, starts, seq_len)  # [n, L]
    hits = window_codes[:, :, None] == np.arange(len(vocabulary))  # [n, L, K]
    counts = hits.sum(axis=1)
    latest = np.where(hits, np.arange(seq_len)[None, :, None], -1).max(axis=1)
    winner = vocabulary[(counts * (seq_len + 1) + latest).argmax(axis=1)]
    if names is None:
        names = tuple(sorted(set(winner.tolist())))
    unknown = sorted(set(winner.tolist()) - set(names))
    if unknown:
        raise DataError(f"label column '{column}' has label(s) {', '.join(unknown)} this model was not trained on "
                        f"({', '.join(names)})")
    if len(names) < 2:
        raise DataError(f"label column '{column}' gives every window the label {names[0]!r}; a conditional model "
                        "needs at least two regimes")
    lookup = {name: i for i, name in enumerate(names)}
    labels = np.array([lookup[name] for name in winner], dtype=np.int64)
    return RegimeDefinition(method="column", names=tuple(names), column=column), labels


def bar_labels(bars: pd.DataFrame, column: str, file: str | Path | None = None) -> np.ndarray:
    """Per-bar labels for ``bars``: its own ``column``, or the column of that name in the candle ``file`` matched
    by bar time (the file reader keeps only OHLCV, so the label column is read here)."""
    if column in bars.columns:
        return bars[column].to_numpy()
    if file is None:
        raise ConfigError(f"--label-column {column}: the candles have no such column (labels come from a --csv file)")
    labels = read_label_column(file, column)
    matched = labels.reindex(pd.DatetimeIndex(bars["time"]))
    if matched.isna().any():
        raise DataError(f"{file}: column '{column}' has no label for {int(matched.isna().sum())} bar(s) "
                        f"(first at {matched.index[matched.isna()][0]}); label every bar")
    return matched.to_numpy()


def read_label_column(path: str | Path, column: str) -> pd.Series:
    """The ``column`` of a candle file as a Series indexed by bar time (UTC), read like ``read_bars_file``."""
    from marketsynth.data.bars import _as_utc_times
    from marketsynth.data.io import _read_csv, _read_parquet, _standard_columns

    path = Path(path)
    raw = _read_parquet(path) if path.suffix.lower() == ".parquet" else _read_csv(path)
    lookup = {str(c).strip().lower(): c for c in raw.columns}
    if column.strip().lower() not in lookup:
        raise ConfigError(f"--label-column {column}: {path} has no such column; it has "
                          f"{', '.join(map(str, raw.columns))}")
    frame = _standard_columns(raw, path)
    times = _as_utc_times(frame["time"], str(path))
    series = pd.Series(raw[lookup[column.strip().lower()]].to_numpy(), index=pd.DatetimeIndex(times))
    return series[~series.index.duplicated(keep="last")]  # duplicate times: the last row wins, as in as_bars


# ---- generated windows ---------------------------------------------------------------------------------------
def frame_regime_stats(frame: pd.DataFrame, names) -> dict[str, dict[str, float]]:
    """``regime_stats`` of a generated candle frame (``sample_id, timestep, open, ..., regime``, in that order)."""
    n, length = frame["sample_id"].nunique(), frame["timestep"].nunique()
    if len(frame) != n * length:
        raise DataError("generated frame is not n samples x equal lengths; cannot measure its regimes")
    opens = frame["open"].to_numpy(np.float64).reshape(n, length)[:, 0]
    paths = price_paths(opens, frame["close"].to_numpy(np.float64).reshape(n, length))
    lookup = {str(name): i for i, name in enumerate(names)}
    labels = np.array([lookup[str(r)] for r in frame["regime"].to_numpy().reshape(n, length)[:, 0]], np.int64)
    return regime_stats(paths, labels, names)
