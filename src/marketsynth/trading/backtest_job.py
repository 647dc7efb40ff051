"""A backtest as a job: market data + a strategy + costs → results, stats and files (``marketsynth backtest``).

- Costs: the maker/taker fees of the exchange the candles came from (Binance USDⓈ-M 0.02 % / 0.05 %, Bybit
  0.02 % / 0.055 %; Binance's for files and samples) unless given, plus slippage in basis points.
- Funding: ``"auto"`` reads the stored funding-rate series of the candles' exchange and symbol (``fetch --funding``
  stores it); candles from a file or a sample, or a symbol without a stored series, get none (``run`` says so in its
  notes). ``"none"`` or a number (a constant rate per 8 h) override it.
- Strategies that learn (``Strategy.learns``) run walk-forward (``marketsynth.splits.walk_forward``): a fresh
  strategy is fitted on each fold's training bars and trades the fold's test bars; the folds' equity curves are
  chained (each fold starts with the previous fold's final equity, so returns compound) into one result.
- Synthetic paths (a ``generate`` output) run the strategy on every path; ``path_distribution`` summarises each
  metric across them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from marketsynth.data.io import atomic_path, write_frame
from marketsynth.data.load import ExchangeSource, MarketData, StoreSource
from marketsynth.errors import ConfigError, DataError
from marketsynth.progress import Progress, or_silent
from marketsynth.timeframes import parse_timeframe
from marketsynth.trading.costs import Costs
from marketsynth.trading.engine import BacktestResult, backtest, backtest_paths, walk_forward_backtest
from marketsynth.trading.strategies import get_strategy_class
from marketsynth.trading.strategy import Strategy

DEFAULT_FOLDS = 4
SYNTHETIC_EPOCH = pd.Timestamp("2000-01-03", tz="UTC")  # a Monday: synthetic paths get bar times from here
PATH_METRICS = ("total_return", "cagr", "sharpe", "sortino", "calmar", "max_drawdown", "win_rate", "profit_factor",
                "n_trades", "exposure")


@dataclass
class BacktestSettings:
    """What a backtest run was asked to do (recorded in stats.json)."""

    strategy: str
    params: dict[str, Any] = field(default_factory=dict)
    capital: float = 10_000.0
    fee_maker: float | None = None
    fee_taker: float | None = None
    slippage_bps: float = 0.0
    leverage: float = 1.0
    funding: str = "auto"
    fill: str = "open"
    stop_loss: float | None = None
    take_profit: float | None = None
    folds: int = DEFAULT_FOLDS
    mode: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def make_strategy(name: str, params: dict[str, Any], *, allow_short: bool = False, checkpoint=None) -> Strategy:
    """The registered strategy with ``params`` (and ``allow_short``), its model attached; one-line errors for a
    strategy that needs a model without one, or a model given to a strategy that uses none."""
    cls = get_strategy_class(name)
    if allow_short:
        params = {**params, "allow_short": True}
    strategy = cls(**params)
    if cls.needs_model is not None and checkpoint is None:
        raise ConfigError(f"strategy {cls.name} needs a trained {cls.needs_model} model: pass --model DIR (train one "
                          f"with 'marketsynth train --model {cls.needs_model} ...')")
    if checkpoint is not None:
        strategy.attach_model(checkpoint)
    return strategy


def costs_for(data: MarketData | None, settings: BacktestSettings) -> Costs:
    """Fees of the candles' exchange (Binance's otherwise) with the settings' overrides."""
    exchange = getattr(data.source, "exchange", None) if data is not None else None
    exchange = exchange or (data.description.get("exchange") if data is not None else None)
    overrides: dict[str, float] = {"slippage_bps": settings.slippage_bps}
    if settings.fee_maker is not None:
        overrides["maker_fee"] = settings.fee_maker
    if settings.fee_taker is not None:
        overrides["taker_fee"] = settings.fee_taker
    return Costs.preset(exchange if exchange in ("binance", "bybit") else "binance", **overrides)


def funding_for(data: MarketData | None, setting: str, notes: list[str]):
    """None, a constant rate per 8 h, or the stored series of ``data``'s market (``"auto"``); ``notes`` hears what
    was chosen."""
    text = str(setting).strip().lower()
    if text == "none":
        return None
    if text != "auto":
        try:
            rate = float(text)
        except ValueError:
            raise ConfigError(f"--funding '{setting}': use auto, none or a rate per 8 h such as 0.0001") from None
        if not math.isfinite(rate) or abs(rate) >= 0.05:
            raise ConfigError(f"--funding {setting}: a funding rate per 8 h is a small fraction (0.0001 = 0.01 %)")
        notes.append(f"funding: a constant {rate:.4%} per 8 h")
        return rate
    if data is None or not isinstance(data.source, StoreSource | ExchangeSource):
        notes.append("funding: none (candles from a file, a sample or a generator carry no funding series; pass "
                     "--funding RATE)")
        return None
    from marketsynth.data.funding import read_funding
    from marketsynth.data.store import open_store

    exchange = data.description.get("exchange") or data.source.exchange
    with open_store(data.source.store, read_only=True) as db:
        try:
            series = read_funding(db, exchange, data.source.symbol, data.bars["time"].iloc[0],
                                  data.bars["time"].iloc[-1] + pd.Timedelta(hours=8))
        except DataError:
            notes.append(f"funding: none stored for {exchange} {data.source.symbol} (fetch it with 'marketsynth "
                         f"fetch --funding'); pass --funding RATE for a constant rate")
            return None
    notes.append(f"funding: {len(series)} stored rates of {exchange} {data.source.symbol}")
    return series


def run_backtest(data: MarketData, strategy_factory, settings: BacktestSettings, *, costs: Costs, funding,
                 progress: Progress | None = None) -> BacktestResult:
    """One backtest over ``data``; walk-forward (chained folds) when the strategy learns."""
    progress = or_silent(progress)
    strategy = strategy_factory()
    options = {"capital": settings.capital, "costs": costs, "leverage": settings.leverage, "fill": settings.fill,
               "stop_loss": settings.stop_loss, "take_profit": settings.take_profit, "funding": funding,
               "mode": settings.mode}
    if not strategy.learns:
        progress.start("backtest", 1, f"{strategy.name} on {len(data.bars):,} bars")
        result = backtest(data.bars, strategy, **options)
        progress.finish("backtest", f"{len(result.trades)} trades")
        return result
    progress.start("backtest", settings.folds, f"{strategy.name}: walk-forward, {settings.folds} folds")
    purge = max(1, int(getattr(strategy, "horizon", 1)))
    if len(data.bars) < (settings.folds + 1) * (strategy.warmup + purge + 1):
        raise DataError(f"{len(data.bars)} bars are too few for {settings.folds} walk-forward folds of "
                        f"{strategy.name} (warm-up {strategy.warmup} bars each); use more data or fewer --folds")
    fitted = []

    def factory() -> Strategy:
        fitted.append(None)
        progress.advance("backtest", 0 if len(fitted) == 1 else 1, f"fold {len(fitted)} of {settings.folds}")
        return strategy_factory()

    wf = walk_forward_backtest(data.bars, factory, settings.folds, purge=purge, **options)
    result = chain_folds(wf.results, settings.capital)
    result.settings["walk_forward"] = [fold.to_dict() for fold in wf.folds]
    progress.finish("backtest", f"{len(result.trades)} trades over {settings.folds} test folds")
    return result


def chain_folds(results: list[BacktestResult], capital: float) -> BacktestResult:
    """Walk-forward test folds as one result: fold k's curve is scaled so that it starts where fold k-1 ended."""
    equity, trades, positions, scale = [], [], [], 1.0
    money = ("equity", "cash")
    for result in results:
        part = result.equity.copy()
        part[list(money)] = part[list(money)] * scale
        part["position"] = part["position"] * scale
        equity.append(part)
        trades.append(result.trades.assign(quantity=result.trades["quantity"] * scale,
                                           fees=result.trades["fees"] * scale,
                                           funding=result.trades["funding"] * scale,
                                           pnl=result.trades["pnl"] * scale))
        positions.append(result.positions.assign(quantity=result.positions["quantity"] * scale,
                                                 fee=result.positions["fee"] * scale,
                                                 position=result.positions["position"] * scale))
        scale = float(part["equity"].iat[-1]) / capital
    first = results[0]
    wiped = next((r.wiped_out for r in results if r.wiped_out is not None), None)
    settings = {**first.settings, "bars": int(sum(len(r.equity) for r in results)),
                "start": str(equity[0]["time"].iat[0])}
    settings.pop("fold", None)
    return BacktestResult(pd.concat(trades, ignore_index=True), pd.concat(equity, ignore_index=True),
                          pd.concat(positions, ignore_index=True), settings, wiped,
                          sum(r.reduced_orders for r in results))


def synthetic_paths(frame: pd.DataFrame, interval: str) -> pd.DataFrame:
    """A ``generate`` output (``sample_id, timestep``, OHLCV) with bar times: every path starts at
    ``SYNTHETIC_EPOCH`` and steps by ``interval``."""
    needed = {"sample_id", "timestep", "open", "high", "low", "close", "volume"}
    if not needed <= set(frame.columns):
        raise DataError(f"a synthetic file needs columns {', '.join(sorted(needed))} (a 'marketsynth generate' "
                        f"output without --normalized)")
    step = parse_timeframe(interval).delta
    frame = frame.sort_values(["sample_id", "timestep"]).reset_index(drop=True)
    times = SYNTHETIC_EPOCH + step * frame["timestep"].to_numpy()
    out = frame[["sample_id", "open", "high", "low", "close", "volume"]].copy()
    out.insert(1, "time", pd.DatetimeIndex(times))
    return out


def run_paths(paths: pd.DataFrame, strategy_factory, settings: BacktestSettings, *, costs: Costs, funding,
              progress: Progress | None = None) -> pd.DataFrame:
    """The strategy on every synthetic path: one row of stats per path (``PATH_METRICS``)."""
    progress = or_silent(progress)
    groups = paths["sample_id"].nunique()
    progress.start("paths", groups, f"{groups} synthetic paths")
    rows = []
    options = {"capital": settings.capital, "costs": costs, "leverage": settings.leverage, "fill": settings.fill,
               "stop_loss": settings.stop_loss, "take_profit": settings.take_profit, "funding": funding,
               "mode": settings.mode}
    for key, frame in paths.groupby("sample_id", sort=True):
        result = backtest_paths([frame.drop(columns="sample_id").reset_index(drop=True)], strategy_factory,
                                **options)[0]
        stats = result.summary()
        rows.append({"sample_id": key, **{m: stats.get(m) for m in PATH_METRICS},
                     "wiped_out": result.wiped_out is not None})
        progress.advance("paths", 1)
    return pd.DataFrame(rows)


def path_distribution(per_path: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    """Mean, standard deviation and the 5/25/50/75/95 % quantiles of each metric across paths."""
    out: dict[str, dict[str, float | None]] = {}
    for metric in PATH_METRICS:
        values = pd.to_numeric(per_path[metric], errors="coerce").dropna().to_numpy(dtype=float)
        if len(values) == 0:
            out[metric] = {"paths": 0}
            continue
        q = np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95])
        out[metric] = {"paths": int(len(values)), "mean": float(values.mean()), "std": float(values.std()),
                       "p5": float(q[0]), "p25": float(q[1]), "median": float(q[2]), "p75": float(q[3]),
                       "p95": float(q[4])}
    return out


def write_stats(path: Path, stats: dict[str, Any]) -> None:
    """``stats.json`` (snake_case keys, no NaN), atomically."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(stats, indent=2, default=str, allow_nan=False) + "\n", encoding="utf-8")


def write_outputs(folder: Path, result: BacktestResult, stats: dict[str, Any], *, title: str) -> dict[str, Path]:
    """trades.csv, equity.csv, positions.csv, stats.json and tearsheet.html into ``folder``."""
    from marketsynth.trading.tearsheet import write_tearsheet

    result.write(folder)
    write_stats(folder / "stats.json", stats)
    write_tearsheet(folder / "tearsheet.html", result, title=title, stats=stats)
    return {name: folder / name for name in ("trades.csv", "equity.csv", "stats.json", "tearsheet.html")}


def write_path_outputs(folder: Path, per_path: pd.DataFrame, distribution: dict, settings: dict) -> dict[str, Path]:
    """paths.csv (one row per path) and stats.json (the distribution of each metric)."""
    write_frame(per_path, folder / "paths.csv")
    write_stats(folder / "stats.json", {"settings": settings, "distribution": distribution})
    return {"paths.csv": folder / "paths.csv", "stats.json": folder / "stats.json"}


def stats_of(result: BacktestResult, settings: BacktestSettings, data: MarketData | None, notes: list[str]) -> dict:
    """The summary (``performance.summary``) with what produced it."""
    stats = dict(result.summary())
    stats["settings"] = {**settings.to_dict(), "costs": result.settings.get("costs")}
    stats["notes"] = list(notes)
    if data is not None:
        stats["data"] = {"label": data.label, **data.description}
    return stats
