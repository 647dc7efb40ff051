"""Stress test: a strategy over K synthetic paths from a generator, each started from real history.

Paths
    ``stress_paths`` samples ``num`` paths of ``horizon`` bars from a checkpoint through ``generation.generate_frame``
    (the same rules as ``generate`` and ``scenarios``: ``regime`` for a conditional model such as the cgan's
    ``crash``; ``temperature`` only for models whose temperature widens the distribution; window models chain
    windows, ``risk.scenarios.check_horizon`` says so). Each path starts at the last real close, one bar after the
    last real bar, and the last ``warm`` real bars are put before it, so the strategy's indicators are warm when the
    synthetic part begins. Only the synthetic part is traded and counted.

Backtest
    Every path is one ``trading.engine.backtest`` over the warm history and the synthetic bars, with the engine's
    walk-forward rule applied by ``TradeFrom``: targets before the first synthetic bar are flat, so trading starts
    with the first synthetic bar's signal and only the synthetic bars' equity is kept (the same costs, fills and
    ledger as every backtest). A strategy that learns is fitted once, before (on real data), and the same fitted
    strategy trades every path; it is never re-fitted on a path. Rule-based strategies take the vectorised path
    (``signals``); 1,000 paths of 168 bars are measured in ``benchmarks/stress.py``.

Figures (``path_stats``, over equity paths ``E[k, 0..H]`` with ``E[k, 0]`` the starting capital)
    - return ``E_H / E_0 - 1``: mean and worst;
    - survival: ``min_t E_t >= ruin × E_0`` (equity never below ``ruin`` of the starting capital);
    - max drawdown ``max_t (1 - E_t / max_{s<=t} E_s)``, and its distribution over paths;
    - recovery: for the deepest drawdown of a path, the bars from its trough to the first bar back at or above the
      peak before it. A path recovers when that happens within the horizon; ``recovered_share`` is the share of
      paths with a drawdown that recovered, ``avg_recovery_bars`` the mean over those that did (paths that never
      fell have nothing to recover from and count in neither).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from marketsynth.errors import ConfigError, DataError, ModelError
from marketsynth.generation import generate_frame, regime_conditions
from marketsynth.progress import Progress, or_silent
from marketsynth.representation import OHLCV
from marketsynth.risk.scenarios import check_horizon
from marketsynth.trading.costs import Costs
from marketsynth.trading.engine import backtest
from marketsynth.trading.strategy import FLAT, History, Signal, Strategy

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
FAN_PERCENTILES = (5, 25, 50, 75, 95)
MIN_WARM = 50


def check_stress_settings(*, num: int, horizon: int, ruin: float) -> None:
    """One ConfigError line for an option out of range."""
    if num < 1:
        raise ConfigError(f"--num must be at least 1 path, got {num}")
    if horizon < 2:
        raise ConfigError(f"--horizon must be at least 2 bars, got {horizon}")
    if not 0 <= ruin < 1:
        raise ConfigError(f"--ruin is a fraction of the starting capital in [0, 1) (0.5: ruined below half), got "
                          f"{ruin}")


def warm_bars(strategy: Strategy, warm: int | None = None) -> int:
    """Real bars put before each path: ``warm``, or twice the strategy's warm-up (at least ``MIN_WARM``)."""
    if warm is not None:
        if warm < strategy.warmup:
            raise ConfigError(f"--warm {warm} is shorter than {strategy.name}'s warm-up of {strategy.warmup} bars; "
                              f"give at least {strategy.warmup}")
        return int(warm)
    return max(2 * int(strategy.warmup), MIN_WARM)


class TradeFrom(Strategy):
    """``inner`` flat before bar ``start`` and unchanged from there: the engine's walk-forward rule (targets before
    the first test bar are forced flat) for one frame of history + test bars, without re-fitting anything."""

    def __init__(self, inner: Strategy, start: int):
        self.inner, self.start = inner, int(start)
        self.name, self.sizing, self.allow_short = inner.name, inner.sizing, inner.allow_short

    @property
    def warmup(self) -> int:
        return self.inner.warmup

    def params(self) -> dict[str, Any]:
        return self.inner.params()

    def signals(self, bars: pd.DataFrame) -> pd.DataFrame | None:
        table = self.inner.signals(bars)
        if table is None:
            return None
        table = table.copy()
        table.iloc[: self.start, table.columns.get_loc("target")] = 0.0
        return table

    def on_bar(self, history: History) -> Signal:
        return FLAT if len(history) <= self.start else self.inner.on_bar(history)


@dataclass
class StressPaths:
    """Paths to stress on: ``frames`` (warm real history + synthetic bars each), ``warm`` real bars per frame,
    ``horizon`` synthetic bars, and what made them."""

    frames: list[pd.DataFrame]
    warm: int
    horizon: int
    generator: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def stress_paths(checkpoint, history: pd.DataFrame, *, num: int, horizon: int, warm: int, seed: int = 0,
                 regime: str | None = None, temperature: float | None = None,
                 step: pd.Timedelta | None = None) -> StressPaths:
    """``num`` paths of ``horizon`` bars from ``checkpoint`` (a loaded generator), each after the last ``warm`` bars
    of ``history`` (module docstring). One-line errors: a model that does not make candles, an unknown regime, a
    temperature the model has none of."""
    model = checkpoint.model
    if not model.models_candles or checkpoint.representation is None:
        raise ModelError(f"{checkpoint.path} holds a {model.name}, which models per-bar features, not candle paths; "
                         f"stress needs a candle generator (cgan with --regime crash, or autoregressive / garch with "
                         f"--temperature)")
    regime_conditions(model, regime, 1)  # an unknown regime or a regime for an unconditional model: one line
    if len(history) < warm:
        raise DataError(f"{len(history)} real bars are fewer than the {warm} bars of history each path starts "
                        f"from; give more real data")
    notes = []
    note = check_horizon(checkpoint, horizon, None if regime is None else regime_conditions(model, regime, 2))
    if note:
        notes.append(note)
    warm_part = history.iloc[len(history) - warm:].reset_index(drop=True)
    if step is None:
        step = pd.Timedelta(pd.Series(warm_part["time"].diff().dropna()).mode().iloc[0])
    start_price, last_time = float(warm_part["close"].iat[-1]), warm_part["time"].iat[-1]
    frame = generate_frame(model, checkpoint.representation, num, seed=seed, length=horizon, start_price=start_price,
                           temperature=temperature, regime=regime)
    frame = frame.sort_values(["sample_id", "timestep"], kind="stable")
    candles = frame[list(OHLCV)].to_numpy(dtype=np.float64).reshape(num, horizon, len(OHLCV))
    real = warm_part[list(OHLCV)].to_numpy(dtype=np.float64)
    times = pd.DatetimeIndex(pd.concat([warm_part["time"], pd.Series(last_time + step * np.arange(1, horizon + 1))],
                                       ignore_index=True)).as_unit("us")
    frames = []
    for path in candles:
        values = np.concatenate([real, path])
        frames.append(pd.DataFrame({"time": times, **{c: values[:, i] for i, c in enumerate(OHLCV)}}, copy=False))
    described = {"name": model.name, "path": str(checkpoint.path), "regime": regime, "temperature": temperature,
                 "seed": seed, "start_price": start_price, "starts_after": last_time.isoformat()}
    return StressPaths(frames, warm, horizon, described, notes)


def path_stats(equity: np.ndarray, ruin: float) -> dict[str, np.ndarray]:
    """Per path, from equity paths ``[K, T]`` whose first column is the starting capital (module docstring):
    ``returns``, ``max_drawdown``, ``survived``, ``had_drawdown``, ``recovered``, ``recovery_bars`` (NaN when the
    path did not fall or did not recover)."""
    equity = np.asarray(equity, dtype=np.float64)
    if equity.ndim != 2 or equity.shape[1] < 2:
        raise DataError(f"equity paths must be [paths, bars] with at least 2 bars, got {equity.shape}")
    start = equity[:, :1]
    peaks = np.maximum.accumulate(equity, axis=1)
    drawdown = 1.0 - np.divide(equity, peaks, out=np.ones_like(equity), where=peaks > 0)
    trough = np.argmax(drawdown, axis=1)
    deepest = drawdown[np.arange(len(equity)), trough]
    had = deepest > 1e-12
    peak_value = peaks[np.arange(len(equity)), trough]
    columns = np.arange(equity.shape[1])
    back = (equity >= peak_value[:, None] * (1 - 1e-12)) & (columns[None, :] > trough[:, None])
    recovered = had & back.any(axis=1)
    first_back = np.where(back.any(axis=1), np.argmax(back, axis=1), -1)
    recovery = np.where(recovered, first_back - trough, np.nan).astype(np.float64)
    return {"returns": equity[:, -1] / start[:, 0] - 1.0, "max_drawdown": np.maximum(deepest, 0.0),
            "survived": equity.min(axis=1) >= ruin * start[:, 0], "had_drawdown": had, "recovered": recovered,
            "recovery_bars": recovery}


@dataclass
class StressResult:
    """The strategy over every path: equity paths ``[K, H + 1]`` (column 0: the starting capital), the per-path
    figures of ``path_stats``, and the settings."""

    equity: np.ndarray
    stats: dict[str, np.ndarray]
    settings: dict[str, Any]
    seconds: float
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Mean and worst return, survival rate, recovery, and the max-drawdown distribution (JSON-ready)."""
        s = self.stats
        returns, drawdowns = s["returns"], s["max_drawdown"]
        fell = int(s["had_drawdown"].sum())
        recovered = s["recovery_bars"][s["recovered"]]
        q = np.quantile(drawdowns, QUANTILES)
        return {"paths": int(len(returns)), "mean_return": float(returns.mean()),
                "median_return": float(np.median(returns)), "worst_return": float(returns.min()),
                "best_return": float(returns.max()), "survival_rate": float(s["survived"].mean()),
                "paths_with_drawdown": fell,
                "recovered_share": float(s["recovered"].sum() / fell) if fell else None,
                "avg_recovery_bars": float(recovered.mean()) if len(recovered) else None,
                "max_drawdown": {"mean": float(drawdowns.mean()), "worst": float(drawdowns.max()),
                                 **{f"p{int(p * 100)}": float(v) for p, v in zip(QUANTILES, q, strict=True)}}}

    def fan(self) -> np.ndarray:
        """``[len(FAN_PERCENTILES), H + 1]`` percentiles of equity / starting capital per bar."""
        return np.percentile(self.equity / self.equity[:, :1], FAN_PERCENTILES, axis=0)

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "summary": self.summary(), "seconds": round(self.seconds, 3),
                "notes": list(self.notes),
                "per_path": {"returns": self.stats["returns"].tolist(),
                             "max_drawdown": self.stats["max_drawdown"].tolist(),
                             "survived": self.stats["survived"].tolist(),
                             "recovery_bars": [None if np.isnan(v) else int(v) for v in self.stats["recovery_bars"]]}}


def run_stress(strategy: Strategy, paths: StressPaths, *, ruin: float = 0.5, capital: float = 10_000.0,
               costs: Costs | None = None, funding=None, leverage: float = 1.0, fill: str = "open",
               stop_loss: float | None = None, take_profit: float | None = None, mode: str = "auto",
               progress: Progress | None = None) -> StressResult:
    """Trade ``strategy`` (fitted already, if it learns) over every path; only the synthetic bars count."""
    progress = or_silent(progress)
    if getattr(strategy, "learns", False) and not getattr(strategy, "fitted", True):
        raise ConfigError(f"strategy {strategy.name} learns: fit it on real bars before the stress test")
    began = time.perf_counter()
    trader = TradeFrom(strategy, paths.warm)
    options = {"capital": capital, "costs": costs or Costs(), "funding": funding, "leverage": leverage, "fill": fill,
               "stop_loss": stop_loss, "take_profit": take_profit, "mode": mode}
    equity = np.empty((len(paths.frames), paths.horizon + 1))
    equity[:, 0] = capital
    progress.start("stress", len(paths.frames), f"{strategy.name} over {len(paths.frames)} paths")
    every = max(1, len(paths.frames) // 50)
    for k, frame in enumerate(paths.frames):
        result = backtest(frame, trader, **options)
        equity[k, 1:] = result.equity["equity"].to_numpy()[paths.warm:]
        if (k + 1) % every == 0:
            progress.advance("stress", every)
    seconds = time.perf_counter() - began
    progress.finish("stress", f"{len(paths.frames)} paths in {seconds:.1f} s")
    settings = {"strategy": strategy.name, "params": strategy.params(), "ruin": ruin, "capital": capital,
                "num": len(paths.frames), "horizon": paths.horizon, "warm": paths.warm,
                "costs": options["costs"].to_dict(), "leverage": leverage, "fill": fill,
                "generator": paths.generator}
    return StressResult(equity, path_stats(equity, ruin), settings, seconds, list(paths.notes))
