"""The augmentation experiment: does training a learned strategy on real + synthetic bars trade better?

Design (every unit is one walk-forward fold × one seed)

- **Folds**: ``splits.walk_forward`` over the real bars (expanding training periods, consecutive test periods that
  never overlap), with a purge of the strategy's label horizon and an ``embargo`` of further bars between each
  training period and its test period.
- **Generators** are trained inside each fold, on the fold's training bars only (``synthetic.fit_generator``), with
  the unit's seed; the range they saw is recorded (``generator_runs``) and checked to end before the test period.
  They produce ``K`` paths of ``path_length`` bars (``K × path_length ≈ ratio ×`` the training bars), anchored at
  the last training close with times continuing the training period.
- **Arms**, each fitted with the unit's seed and backtested on the fold's held-out test bars with the same costs
  (``trading.engine.walk_forward_backtest`` with the fold: the fit sees only the training bars, trading starts at
  the first test bar): ``real`` (real training bars only), ``aug:<generator>`` (real + that generator's paths as
  ``fit(bars, extra=paths)``), ``null`` (real + the same number and length of block-bootstrap paths of the same real
  training bars, ``synthetic.null_paths``): more samples, but no new information.
- **Per arm**: total return, Sharpe, max drawdown, win rate, profit factor (``trading.performance`` via the
  backtest's ``summary``) and direction accuracy (``direction_accuracy`` on the test bars) per unit; mean and a
  bootstrap CI over units; paired differences ``aug − real`` and ``aug − null`` with bootstrap CIs; PSR and DSR of
  each configuration's chained daily test returns (``stats.sharpe_table``: trials = every arm × generator × seed).
- **Quality** of each generator's paths (and of the null paths, for reference) against the fold's held-out bars
  (``quality.data_quality``: TSTR ratio, KL of returns, lag-1 autocorrelation difference, diversity).
- **Stress** (optional): each arm's strategy from the last fold, for every seed, over the same stress paths
  (``stress.run_stress``).

Every unit is reported, whatever the result; nothing is dropped or picked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from marketsynth import splits
from marketsynth.data.load import MarketData
from marketsynth.errors import ConfigError, DataError
from marketsynth.progress import Progress, or_silent
from marketsynth.timeframes import parse_timeframe
from marketsynth.trading.costs import Costs
from marketsynth.trading.engine import walk_forward_backtest
from marketsynth.trading.experiments import stats as estats
from marketsynth.trading.experiments.quality import data_quality
from marketsynth.trading.experiments.synthetic import (
    NULL_BLOCK,
    fit_generator,
    generator_paths,
    null_paths,
    path_count,
)
from marketsynth.trading.performance import daily_returns
from marketsynth.trading.strategies import get_strategy_class
from marketsynth.trading.strategy import Strategy

METRICS = ("total_return", "sharpe", "max_drawdown", "win_rate", "profit_factor", "direction_accuracy")
REAL, NULL = "real", "null"


@dataclass
class AugmentSettings:
    """What the experiment was asked to do (recorded in augment.json)."""

    strategy: str
    generators: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    ratio: float = 2.0
    seeds: int = 5
    seed: int = 0  # the first seed; units use seed .. seed + seeds - 1
    folds: int = 4
    embargo: int = 24
    path_length: int = 512
    null_block: int = NULL_BLOCK
    gen_epochs: int | None = None
    gen_config: dict[str, Any] = field(default_factory=dict)
    capital: float = 10_000.0
    leverage: float = 1.0
    fill: str = "open"
    quality: bool = True
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def arms(self) -> list[str]:
        return [REAL, *(f"aug:{g}" for g in self.generators), NULL]


def check_settings(settings: AugmentSettings) -> type[Strategy]:
    """One-line errors before any work; the strategy class."""
    cls = get_strategy_class(settings.strategy)
    if not cls.learns:
        raise ConfigError(f"augment compares training data, so the strategy must learn from bars; {cls.name} does "
                          f"not (use gbm or ensemble)")
    if not settings.generators:
        raise ConfigError("--generator names at least one generator, e.g. --generator garch")
    from marketsynth.models.registry import get_model_class

    for name in settings.generators:
        model = get_model_class(name)
        if not model.models_candles:
            raise ConfigError(f"generator {model.name} models per-bar features, not candles; use a candle model such "
                              f"as autoregressive or garch")
    path_count(settings.ratio, 1, 1)  # ratio > 0
    if settings.seeds < 1 or settings.folds < 1:
        raise ConfigError(f"--seeds and --folds must be at least 1, got {settings.seeds} and {settings.folds}")
    if settings.embargo < 0:
        raise ConfigError(f"--embargo is a number of bars >= 0, got {settings.embargo}")
    return cls


def make_folds(n: int, settings: AugmentSettings, strategy: Strategy) -> list[splits.Fold]:
    """Walk-forward folds with purge (the label horizon) and embargo; a DataError when a test period is shorter
    than the strategy's warm-up or a training period cannot hold it."""
    purge = max(1, int(getattr(strategy, "horizon", 1)))
    folds = splits.walk_forward(n, settings.folds, purge=purge, embargo=settings.embargo)
    need = strategy.warmup + purge + 1
    short = [f for f in folds if f.test_size < need or f.train_size < 2 * need]
    if short:
        f = short[0]
        raise DataError(f"folds too short for {strategy.name}'s warm-up of {strategy.warmup} bars: fold {f.index + 1} "
                        f"trains on {f.train_size} bars and tests on {f.test_size} (need at least {2 * need} and "
                        f"{need}); use fewer --folds or more data")
    if settings.path_length <= strategy.warmup + purge:
        raise ConfigError(f"--path-length {settings.path_length} leaves nothing to learn after {strategy.name}'s "
                          f"warm-up of {strategy.warmup} bars; use at least {4 * strategy.warmup}")
    return folds


@dataclass
class AugmentResult:
    settings: dict[str, Any]
    data: dict[str, Any]
    folds: list[dict[str, Any]]
    generator_runs: list[dict[str, Any]]
    units: list[dict[str, Any]]  # one row per fold × seed × arm
    quality: list[dict[str, Any]]
    summary: dict[str, Any]
    differences: dict[str, Any]
    sharpe: dict[str, Any]
    seconds: float
    quality_units: list[dict[str, Any]] = field(default_factory=list)
    stress: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def run_augment(data: MarketData, settings: AugmentSettings, *, costs: Costs | None = None, funding=None,
                stress=None, progress: Progress | None = None) -> AugmentResult:
    """Run the experiment of the module docstring on ``data``. ``stress``: None, or ``(paths, ruin)`` with
    ``stress.StressPaths`` to run each arm's last-fold strategy over."""
    progress = or_silent(progress)
    began = time.perf_counter()
    cls = check_settings(settings)
    costs = costs or Costs()
    bars = data.bars.reset_index(drop=True)
    probe = cls(**settings.params)
    folds = make_folds(len(bars), settings, probe)
    step = parse_timeframe(data.timeframe).delta if data.timeframe else pd.Series(bars["time"].diff()).mode().iloc[0]
    seeds = list(range(settings.seed, settings.seed + settings.seeds))
    options = {"capital": settings.capital, "costs": costs, "funding": funding, "leverage": settings.leverage,
               "fill": settings.fill}
    units, runs, quality, daily = [], [], [], {}
    last_fold: dict[tuple[str, int], Strategy] = {}
    total = len(folds) * len(seeds)
    progress.start("augment", total, f"{len(folds)} folds × {len(seeds)} seeds × {len(settings.arms())} arms")
    for fold in folds:
        train = bars.iloc[fold.train].reset_index(drop=True)
        test = bars.iloc[fold.test].reset_index(drop=True)
        test_start = test["time"].iat[0]
        anchor = {"start_time": train["time"].iat[-1] + step, "step": step}
        count = path_count(settings.ratio, len(train), settings.path_length)
        for seed in seeds:
            progress.advance("augment", 0, f"fold {fold.index + 1}/{len(folds)}, seed {seed}: generators")
            extras: dict[str, list[pd.DataFrame] | None] = {REAL: None}
            for name in settings.generators:
                run = fit_generator(name, train, timeframe=data.adjacent, seed=seed, epochs=settings.gen_epochs,
                                    config=settings.gen_config, device=settings.device)
                if run.train_end >= test_start:  # never true by construction; the experiment is void if it were
                    raise DataError(f"generator {name} saw bars up to {run.train_end}, inside the test period")
                runs.append({"fold": fold.index, **run.to_dict(), "test_start": test_start.isoformat()})
                extras[f"aug:{name}"] = generator_paths(run, count, settings.path_length, seed=seed,
                                                        start_price=float(train["close"].iat[-1]), **anchor)
            extras[NULL] = null_paths(train, count, settings.path_length, seed=seed, timeframe=data.adjacent,
                                      block=settings.null_block, **anchor)
            if settings.quality:
                for arm, paths in extras.items():
                    if paths is not None:
                        quality.append({"fold": fold.index, "seed": seed, "arm": arm,
                                        **data_quality(paths, train, test, timeframe=data.adjacent, seed=seed)})
            for arm, extra in extras.items():
                progress.advance("augment", 0, f"fold {fold.index + 1}/{len(folds)}, seed {seed}: {arm}")
                row, strategy, curve = _run_arm(bars, fold, cls, {**settings.params, "seed": seed}, extra, options)
                units.append({"fold": fold.index, "seed": seed, "arm": arm, "paths": 0 if extra is None else
                              len(extra), "path_length": settings.path_length, **row})
                daily.setdefault(f"{arm}|seed={seed}", []).append(curve)
                last_fold[(arm, seed)] = strategy
            progress.advance("augment", 1)
    progress.finish("augment", f"{len(units)} backtests")
    summary, differences = summarise(units, settings.arms(), seed=settings.seed)
    sharpe = estats.sharpe_table({key: pd.concat(parts) for key, parts in daily.items()})
    result = AugmentResult(settings.to_dict(), {"label": data.label, **data.description},
                           [f.to_dict() | _times(bars, f) for f in folds], runs, units, quality_summary(quality),
                           summary, differences, sharpe, 0.0, quality)
    if stress is not None:
        result.stress = stress_block(stress, last_fold, seeds, settings, options, progress)
    result.seconds = time.perf_counter() - began
    return result


def _run_arm(bars: pd.DataFrame, fold: splits.Fold, cls: type[Strategy], params: dict[str, Any], extra,
             options: dict[str, Any]) -> tuple[dict[str, Any], Strategy, pd.Series]:
    """One arm of one unit: fit on the fold's training bars (+ ``extra``), trade its test bars."""

    def factory() -> Strategy:
        strategy = cls(**params)
        if extra is not None:
            plain_fit = strategy.fit
            strategy.fit = lambda train, extra_=None: plain_fit(train, extra=extra)
        return strategy

    wf = walk_forward_backtest(bars, factory, [fold], **options)
    result, strategy = wf.results[0], wf.strategies[0]
    window = bars.iloc[fold.train.start: fold.test.stop].reset_index(drop=True)
    stats = result.summary()
    row = {m: stats.get(m) for m in METRICS if m != "direction_accuracy"}
    accuracy = strategy.direction_accuracy(window, start=fold.test.start - fold.train.start)
    row.update(direction_accuracy=None if np.isnan(accuracy) else float(accuracy), n_trades=stats.get("n_trades"),
               psr=stats.get("psr"), test_start=str(result.equity["time"].iat[0]),
               test_end=str(result.equity["time"].iat[-1]), test_bars=len(result.equity),
               costs=result.settings.get("costs"), wiped_out=result.wiped_out is not None)
    return row, strategy, daily_returns(result.equity[["time", "equity"]])


def summarise(units: list[dict[str, Any]], arms: list[str], *, seed: int = 0) -> tuple[dict, dict]:
    """Per arm and metric ``stats.mean_ci`` over units; per augmented arm and metric the paired differences
    against ``real`` and ``null`` (units matched by fold and seed)."""
    table = pd.DataFrame(units)
    summary = {arm: {m: estats.mean_ci(table.loc[table["arm"] == arm, m].tolist(), seed=seed)
                     for m in (*METRICS, "n_trades")} for arm in arms}
    differences = {}
    keyed = {arm: table[table["arm"] == arm].set_index(["fold", "seed"]) for arm in arms}
    for arm in arms:
        if not arm.startswith("aug:"):
            continue
        differences[arm] = {}
        for other in (REAL, NULL):
            index = keyed[arm].index.intersection(keyed[other].index)
            differences[arm][f"minus_{other}"] = {
                m: estats.paired(keyed[arm].loc[index, m].tolist(), keyed[other].loc[index, m].tolist(), seed=seed)
                for m in METRICS}
    return summary, differences


def quality_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean of each quality figure per arm over folds and seeds."""
    if not rows:
        return []
    table = pd.DataFrame(rows)
    out = []
    for arm, part in table.groupby("arm", sort=False):
        figures = {k: (None if part[k].isna().all() else float(part[k].mean()))
                   for k in ("tstr_ratio", "kl_returns", "acf1_diff", "diversity", "diversity_expected")}
        out.append({"arm": arm, "units": int(len(part)), **figures})
    return out


def stress_block(stress, last_fold: dict[tuple[str, int], Strategy], seeds: list[int], settings: AugmentSettings,
                 options: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Each arm's last-fold strategy of every seed over the same stress paths: per arm the mean over seeds of the
    stress figures, and every seed's figures."""
    from marketsynth.trading.experiments.stress import run_stress

    paths, ruin = stress
    per_arm: dict[str, Any] = {}
    for arm in settings.arms():
        rows = []
        for seed in seeds:
            result = run_stress(last_fold[(arm, seed)], paths, ruin=ruin, progress=progress,
                                **{k: options[k] for k in ("capital", "costs", "funding", "leverage", "fill")})
            rows.append({"seed": seed, **result.summary()})
        keys = ("mean_return", "worst_return", "survival_rate", "avg_recovery_bars", "recovered_share")
        per_arm[arm] = {"seeds": rows, **{k: _mean([r[k] for r in rows]) for k in keys}}
    return {"generator": paths.generator, "num": len(paths.frames), "horizon": paths.horizon, "ruin": ruin,
            "notes": paths.notes, "arms": per_arm}


def _mean(values) -> float | None:
    defined = [float(v) for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def _times(bars: pd.DataFrame, fold: splits.Fold) -> dict[str, str]:
    t = bars["time"]
    return {"train_first": t.iat[fold.train.start].isoformat(), "train_last": t.iat[fold.train.stop - 1].isoformat(),
            "test_first": t.iat[fold.test.start].isoformat(), "test_last": t.iat[fold.test.stop - 1].isoformat()}
