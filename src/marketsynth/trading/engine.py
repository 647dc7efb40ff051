"""Backtest a strategy on candles: ``backtest``, ``backtest_paths`` (many synthetic paths), ``walk_forward_backtest``.

Conventions (the README quotes them; costs, funding and margin are detailed in ``marketsynth.trading.costs``):

- **Signals and fills.** The strategy's target after bar ``i``'s close is known at that close. By default it fills at
  bar ``i + 1``'s open (``fill="open"``); ``fill="close"`` fills at bar ``i``'s close. The last bar's signal is
  never filled (with next-open fills there is no next bar; with close fills the position would be closed again at
  the same price at once). Quantities are fractional.
- **Orders only when the target changes** — no rebalancing as prices drift. ``sizing="fraction"`` targets are
  −1…+1 of equity at the fill (mark-to-market at the raw fill price) times leverage; ``"quantity"`` targets are
  units. A change of side closes the position, then opens the new one with the equity left. A change within one
  side adds (the entry price becomes the quantity-weighted average) or closes part (a trade record for the closed
  part, with its share of entry fees and funding). An order larger than the free balance allows (margin plus fee)
  is reduced to fit; a target of ±1 therefore means "all equity after the entry fee".
- **Market orders** pay the taker fee and slippage against the trader, stops and take-profits included.
- **Stop-loss / take-profit** are fractions of the position's average entry price (``stop_loss=0.05``: 5 % below a
  long's entry, above a short's), checked on every bar the position is held after its fill (the fill bar itself
  with open fills). When the stop and the target both lie inside one bar, the stop wins; a bar that opens beyond
  a level (a gap) fills at the open. After a stop, take-profit or liquidation the position stays flat until the
  strategy's target changes.
- **Liquidation** (isolated margin) happens when the bar's adverse extreme (low for longs, high for shorts) reaches
  the liquidation price, before the stop if the stop lies beyond it. Equity never goes below 0; an account whose
  equity falls to (about) 0 is *wiped out*: it stops trading and ``BacktestResult.wiped_out`` says when.
- **End.** A position still open after the last bar is closed at its close (taker fee and slippage) and recorded
  as a trade with ``exit_reason="end"``.
- **Times** in trades and fills are the open time of the bar the fill happened in (``entry_bar``/``exit_bar`` give
  positions); equity is marked at each bar's close.

Two execution paths share one accounting core (``marketsynth.trading.ledger.Ledger``), so they cannot diverge:
the vectorised path takes the whole target series from ``Strategy.signals`` and hands the changes to the ledger;
the event path calls ``Strategy.on_bar`` bar by bar with a ``History`` that ends at the current bar and hands each
change to the ledger as it happens.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from marketsynth.data.bars import BAR_COLUMNS, TIME_DTYPE, as_bars
from marketsynth.data.io import atomic_path, write_frame
from marketsynth.errors import ConfigError, DataError
from marketsynth.splits import Fold
from marketsynth.splits import walk_forward as walk_forward_folds
from marketsynth.trading.costs import Costs, funding_events
from marketsynth.trading.ledger import Ledger
from marketsynth.trading.strategy import History, Strategy

FILLS = ("open", "close")
MODES = ("auto", "vectorised", "event")
TRADE_COLUMNS = ["entry_time", "exit_time", "entry_bar", "exit_bar", "side", "quantity", "entry_price",
                 "exit_price", "fees", "funding", "pnl", "return", "exit_reason"]
FILL_COLUMNS = ["time", "bar", "action", "quantity", "price", "fee", "position", "reason"]


@dataclass
class BacktestResult:
    """What a backtest produced, as pandas frames.

    - ``trades``: one row per closed trade or closed part: ``entry_time, exit_time, entry_bar, exit_bar, side,
      quantity, entry_price`` (average, after slippage), ``exit_price, fees`` (entry share + exit), ``funding``
      (paid; negative = received), ``pnl`` (after fees and funding), ``return`` (pnl over the margin committed,
      ``quantity × entry_price / leverage``: the return on notional at leverage 1), ``exit_reason`` (signal,
      stop_loss, take_profit, liquidation, end).
    - ``equity``: one row per bar: ``time, price`` (close), ``target`` and ``confidence`` (the strategy's; NaN
      from the bar the account was wiped out),
      ``position`` (signed units after the bar), ``cash`` (wallet balance: capital plus realized P&L, fees and
      funding; the isolated margin is part of it), ``equity`` (cash plus unrealized P&L at the close),
      ``exposure`` (position × price / equity; leverage shows as |exposure| > 1).
    - ``positions``: every fill: ``time, bar, action`` (open, add, reduce, close), ``quantity`` (signed change),
      ``price, fee, position`` (after), ``reason``.
    - ``settings``: the inputs, JSON-safe; ``wiped_out``: the time equity hit 0, or None.
    """

    trades: pd.DataFrame
    equity: pd.DataFrame
    positions: pd.DataFrame
    settings: dict[str, Any]
    wiped_out: pd.Timestamp | None = None
    reduced_orders: int = 0
    _stats: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def final_equity(self) -> float:
        return float(self.equity["equity"].iat[-1])

    @property
    def total_return(self) -> float:
        return self.final_equity / float(self.settings["capital"]) - 1.0

    def summary(self) -> dict[str, Any]:
        """Performance statistics from ``marketsynth.trading.performance.summary`` (computed once)."""
        if self._stats is None:
            from marketsynth.trading import performance  # lazy: metrics are not needed to run a backtest

            self._stats = performance.summary(self)
        return self._stats

    def write(self, folder: str | Path) -> Path:
        """Write trades.csv, equity.csv, positions.csv and settings.json into ``folder`` (created), atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_frame(_iso_times(self.trades, ("entry_time", "exit_time")), folder / "trades.csv")
        write_frame(_iso_times(self.equity, ("time",)), folder / "equity.csv")
        write_frame(_iso_times(self.positions, ("time",)), folder / "positions.csv")
        settings = {**self.settings, "wiped_out": None if self.wiped_out is None else self.wiped_out.isoformat()}
        with atomic_path(folder / "settings.json") as tmp:
            tmp.write_text(json.dumps(settings, indent=2, default=str) + "\n")
        return folder


def backtest(bars: pd.DataFrame, strategy: Strategy, *, capital: float = 10_000.0, costs: Costs | None = None,
             leverage: float = 1.0, fill: str = "open", stop_loss: float | None = None,
             take_profit: float | None = None, funding=None, mode: str = "auto") -> BacktestResult:
    """Run ``strategy`` over ``bars`` (a bars frame) and account for it; see the module docstring.

    ``costs`` defaults to ``Costs()`` (Binance USDⓈ-M fees, no slippage). ``funding`` is None, a rate per 8 h or a
    Series of rates by funding time (``marketsynth.trading.costs.funding_events``). ``mode``: "vectorised" uses
    ``strategy.signals``, "event" calls ``strategy.on_bar`` bar by bar, "auto" takes the vectorised path when the
    strategy has one. Raises ConfigError for bad settings, DataError for bad or too few bars.
    """
    costs = Costs() if costs is None else costs
    settings = _check_settings(strategy, capital=capital, costs=costs, leverage=leverage, fill=fill,
                               stop_loss=stop_loss, take_profit=take_profit, mode=mode)
    bars = _check_bars(bars, strategy)
    return _run(bars, strategy, settings, costs, funding)


def _run(bars: pd.DataFrame, strategy: Strategy, settings: dict[str, Any], costs: Costs, funding,
         trade_from: int = 0) -> BacktestResult:
    n = len(bars)
    prices = {k: bars[k].to_numpy(dtype="float64") for k in ("open", "high", "low", "close")}
    times = bars["time"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")
    fbars, rates = funding_events(times, funding)
    funding_sum = None
    if len(fbars):
        step = np.zeros(n)
        step[fbars] = prices["open"][fbars] * rates
        funding_sum = np.cumsum(step)
    ledger = Ledger(prices, funding_sum, capital=settings["capital"], costs=costs, leverage=settings["leverage"],
                    fill=settings["fill"], stop_loss=settings["stop_loss"], take_profit=settings["take_profit"],
                    sizing=strategy.sizing)
    check = _target_check(strategy)
    table = strategy.signals(bars) if settings["mode"] in ("auto", "vectorised") else None
    if table is None and settings["mode"] == "vectorised":
        raise ConfigError(f"strategy {strategy.name} has no vectorised signals; use mode='event' (or 'auto')")
    if table is not None:
        used = "vectorised"
        targets, confidence = _signal_arrays(table, n, strategy)
        if trade_from:
            targets[:trade_from] = 0.0
        changes = np.flatnonzero(np.diff(targets, prepend=0.0) != 0.0)
        for bar in changes.tolist():
            if ledger.wiped_bar is not None:
                break
            target = float(targets[bar])
            check(target, bar)
            ledger.order(bar, target)
    else:
        used = "event"
        targets, confidence = _event_loop(strategy, bars, ledger, check, trade_from)
    ledger.finish()
    return _result(bars, ledger, targets, confidence, {**settings, "mode": used,
                                                        "funding": _describe_funding(funding, len(fbars))})


def _event_loop(strategy: Strategy, bars: pd.DataFrame, ledger: Ledger, check: Callable, trade_from: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Call ``on_bar`` once per bar with the history up to it; each change of target is an order at once.

    Signals are recorded only when ``on_bar`` returns a different object than on the bar before (a strategy that
    returns the same ``Signal`` while nothing changes costs almost nothing per bar); the per-bar target and
    confidence columns are expanded from those records at the end.
    """
    n = len(bars)
    history = History(bars, 0)
    on_bar = strategy.on_bar
    marks: list[int] = []
    recorded: list = []
    previous = None
    for size in range(1, trade_from + 1):  # history only (walk-forward training bars): no orders
        history._n = size
        signal = on_bar(history)
        if signal is not previous:
            previous = signal
            marks.append(size - 1)
            recorded.append(signal)
    last, stop = 0.0, n
    previous = None  # the first tradable bar is looked at even if its signal repeats the warm-up's last one
    for size in range(trade_from + 1, n + 1):
        history._n = size
        signal = on_bar(history)
        if signal is previous:
            continue
        previous = signal
        bar = size - 1
        marks.append(bar)
        recorded.append(signal)
        target = signal[0]
        if target != last:
            if target != target:  # NaN: flat
                target = 0.0
                if target == last:
                    continue
            last = target
            check(target, bar)
            ledger.order(bar, target)
            if ledger.wiped_bar is not None:
                stop = size
                break
    lengths = np.diff(np.asarray(marks + [stop], dtype=np.int64))
    targets = np.zeros(n)
    confidence = np.full(n, np.nan)
    if recorded:
        values = np.asarray([s[0] for s in recorded], dtype="float64")
        targets[marks[0]:stop] = np.repeat(np.where(np.isnan(values), 0.0, values), lengths)
        confidence[marks[0]:stop] = np.repeat(np.asarray([s[1] for s in recorded], dtype="float64"), lengths)
    if trade_from:
        targets[:trade_from] = 0.0
    return targets, confidence


def _target_check(strategy: Strategy) -> Callable[[float, int], None]:
    fraction, allow_short = strategy.sizing == "fraction", bool(strategy.allow_short)

    def check(target: float, bar: int) -> None:
        if not math.isfinite(target):
            raise ConfigError(f"strategy {strategy.name} returned target {target} at bar {bar}; targets are finite")
        if fraction and abs(target) > 1.0:
            raise ConfigError(f"strategy {strategy.name} returned target {target:g} at bar {bar}; fraction targets "
                              f"lie in -1…+1 of equity (use leverage for more)")
        if target < 0 and not allow_short:
            raise ConfigError(f"strategy {strategy.name} returned a short target ({target:g}) at bar {bar} but "
                              f"allow_short is off; set allow_short=true")

    return check


def _signal_arrays(table: pd.DataFrame, n: int, strategy: Strategy) -> tuple[np.ndarray, np.ndarray]:
    if len(table) != n or "target" not in table:
        raise ConfigError(f"strategy {strategy.name}.signals returned {len(table)} rows (need {n}, one per bar) "
                          f"with columns {list(table.columns)} (need target, confidence)")
    targets = np.nan_to_num(table["target"].to_numpy(dtype="float64"), nan=0.0, posinf=np.inf, neginf=-np.inf)
    confidence = (np.array(table["confidence"], dtype="float64") if "confidence" in table  # a writable copy
                  else np.full(n, np.nan))
    return targets, confidence


def _result(bars: pd.DataFrame, ledger: Ledger, targets: np.ndarray, confidence: np.ndarray,
            settings: dict[str, Any]) -> BacktestResult:
    times = bars["time"].reset_index(drop=True)
    if ledger.wiped_bar is not None:  # the strategy is no longer asked from there on
        targets[ledger.wiped_bar:] = np.nan
        confidence[ledger.wiped_bar:] = np.nan
    curves = ledger.curves()
    close = ledger.close
    equity_values = curves["equity"]
    with np.errstate(divide="ignore", invalid="ignore"):
        exposure = np.where(equity_values > 0, curves["position"] * close / equity_values, 0.0)
    equity = pd.DataFrame({"time": times, "price": close, "target": targets, "confidence": confidence,
                           "position": curves["position"], "cash": curves["cash"], "equity": equity_values,
                           "exposure": exposure}, copy=False)
    trades = _records(ledger.trades, TRADE_COLUMNS[2:])
    trades.insert(0, "exit_time", times.array[trades["exit_bar"].to_numpy(dtype=np.int64)])
    trades.insert(0, "entry_time", times.array[trades["entry_bar"].to_numpy(dtype=np.int64)])
    positions = _records(ledger.fills, FILL_COLUMNS[1:])
    positions.insert(0, "time", times.array[positions["bar"].to_numpy(dtype=np.int64)])
    wiped = None if ledger.wiped_bar is None else pd.Timestamp(times.iat[ledger.wiped_bar])
    if ledger.capped:
        warnings.warn(f"{ledger.capped} order(s) were larger than the free balance allows and were reduced to fit",
                      stacklevel=3)
    settings = {**settings, "bars": len(bars), "start": str(times.iat[0]), "end": str(times.iat[-1])}
    return BacktestResult(trades, equity, positions, settings, wiped, ledger.capped)


def _records(rows: list[tuple], columns: list[str]) -> pd.DataFrame:
    """A frame from row tuples, built column by column (much faster than from the rows)."""
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype="object" if c in ("side", "action", "reason", "exit_reason")
                                          else "int64" if c.endswith("bar") else "float64") for c in columns})
    return pd.DataFrame({c: np.asarray(v) for c, v in zip(columns, zip(*rows, strict=True), strict=True)},
                        copy=False)


# ---------------------------------------------------------------------------------------------- many paths


def backtest_paths(paths, strategy: Strategy | Callable[[], Strategy], **kwargs) -> dict[Any, BacktestResult]:
    """Run one strategy over many synthetic paths: a list of bars frames (keys 0, 1, …) or one long frame with a
    ``sample_id`` column (keys are its values). ``strategy`` may be an instance (reused: its event state resets
    when it sees a new history) or a zero-argument factory; ``kwargs`` go to ``backtest``."""
    if isinstance(paths, pd.DataFrame):
        if "sample_id" not in paths.columns:
            raise DataError("a frame of paths needs a 'sample_id' column; or pass a list of bars frames")
        groups = {key: frame.drop(columns="sample_id") for key, frame in paths.groupby("sample_id", sort=True)}
    elif isinstance(paths, Sequence) and not isinstance(paths, str):
        groups = dict(enumerate(paths))
    else:
        raise DataError(f"paths must be a list of bars frames or a frame with 'sample_id', got {type(paths).__name__}")
    if not groups:
        raise DataError("no paths to backtest")
    make = strategy if callable(strategy) and not isinstance(strategy, Strategy) else (lambda: strategy)
    return {key: backtest(frame, make(), **kwargs) for key, frame in groups.items()}


def summarize_paths(results: dict[Any, BacktestResult]) -> pd.DataFrame:
    """One row per path: final equity, total return, trades, wiped out."""
    return pd.DataFrame([{"sample_id": key, "final_equity": r.final_equity, "total_return": r.total_return,
                          "trades": len(r.trades), "wiped_out": r.wiped_out is not None}
                         for key, r in results.items()])


# ---------------------------------------------------------------------------------------------- walk-forward


@dataclass
class WalkForwardResult:
    """Per fold: the fold, the strategy as fitted, and the backtest of its test bars (each fold starts afresh with
    the same capital). ``table()`` gives one row per fold."""

    folds: list[Fold]
    strategies: list[Strategy]
    results: list[BacktestResult]

    def table(self) -> pd.DataFrame:
        rows = []
        for fold, result in zip(self.folds, self.results, strict=True):
            rows.append({**fold.to_dict(), "final_equity": result.final_equity, "total_return": result.total_return,
                         "trades": len(result.trades), "wiped_out": result.wiped_out is not None})
        return pd.DataFrame(rows)


def walk_forward_backtest(bars: pd.DataFrame, strategy_factory: Callable[[], Strategy], folds: int | list[Fold], *,
                          purge: int = 0, embargo: int = 0, train_size: int | None = None,
                          test_size: int | None = None, **kwargs) -> WalkForwardResult:
    """Fit a fresh strategy on each fold's training bars and trade its test bars.

    ``folds`` is a list of ``marketsynth.splits.Fold`` or a number of folds for ``splits.walk_forward`` (with
    ``purge``, ``embargo``, ``train_size``, ``test_size``). ``fit`` sees only ``bars[fold.train]``. The backtest runs
    over ``bars[fold.train.start : fold.test.stop]`` so that indicators on the test bars can read the bars before
    them as history, but targets before the first test bar are forced flat: trading starts with the first test
    bar's signal. The result's curves and trades cover the test bars only. ``kwargs`` go to ``backtest``.
    """
    bars = as_bars(bars)
    if isinstance(folds, int):
        folds = walk_forward_folds(len(bars), folds, purge=purge, embargo=embargo, train_size=train_size,
                                   test_size=test_size)
    costs = kwargs.pop("costs", None) or Costs()
    funding = kwargs.pop("funding", None)
    strategies, results = [], []
    for fold in folds:
        strategy = strategy_factory()
        strategy.fit(bars.iloc[fold.train].reset_index(drop=True))
        window = bars.iloc[fold.train.start: fold.test.stop].reset_index(drop=True)
        settings = _check_settings(strategy, costs=costs, **kwargs)
        window = _check_bars(window, strategy)
        offset = fold.test.start - fold.train.start
        result = _run(window, strategy, settings, costs, funding, trade_from=offset)
        strategies.append(strategy)
        results.append(_test_part(result, offset, fold))
    return WalkForwardResult(list(folds), strategies, results)


def _test_part(result: BacktestResult, offset: int, fold: Fold) -> BacktestResult:
    equity = result.equity.iloc[offset:].reset_index(drop=True)
    trades = result.trades.assign(entry_bar=result.trades["entry_bar"] - offset,
                                  exit_bar=result.trades["exit_bar"] - offset)
    positions = result.positions.assign(bar=result.positions["bar"] - offset)
    settings = {**result.settings, "fold": fold.to_dict(), "bars": len(equity), "start": str(equity["time"].iat[0])}
    return BacktestResult(trades, equity, positions, settings, result.wiped_out, result.reduced_orders)


# ---------------------------------------------------------------------------------------------- checks


def _check_settings(strategy: Strategy, *, capital: float = 10_000.0, costs: Costs | None = None,
                    leverage: float = 1.0, fill: str = "open", stop_loss: float | None = None,
                    take_profit: float | None = None, mode: str = "auto") -> dict[str, Any]:
    if not isinstance(strategy, Strategy):
        raise ConfigError(f"strategy must be a marketsynth Strategy, got {type(strategy).__name__}")
    if costs is not None and not isinstance(costs, Costs):
        raise ConfigError(f"costs must be a marketsynth.trading.costs.Costs, got {type(costs).__name__}")
    if not _number(capital) or capital <= 0:
        raise ConfigError(f"capital must be a positive number, got {capital!r}")
    if not _number(leverage) or leverage < 1:
        raise ConfigError(f"leverage must be 1 or more, got {leverage!r}")
    if fill not in FILLS:
        raise ConfigError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
    mode = "vectorised" if mode == "vectorized" else mode
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if stop_loss is not None and (not _number(stop_loss) or not 0 < stop_loss < 1):
        raise ConfigError(f"stop_loss is a fraction of the entry price between 0 and 1 (0.05 = 5 %), got "
                          f"{stop_loss!r}")
    if take_profit is not None and (not _number(take_profit) or take_profit <= 0):
        raise ConfigError(f"take_profit is a positive fraction of the entry price (0.1 = 10 %), got "
                          f"{take_profit!r}")
    return {"strategy": strategy.name, "params": strategy.params(), "sizing": strategy.sizing,
            "capital": float(capital), "leverage": float(leverage), "fill": fill, "mode": mode,
            "stop_loss": None if stop_loss is None else float(stop_loss),
            "take_profit": None if take_profit is None else float(take_profit),
            "costs": (costs or Costs()).to_dict()}


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_bars(bars: pd.DataFrame, strategy: Strategy) -> pd.DataFrame:
    if not isinstance(bars, pd.DataFrame):
        raise DataError(f"bars must be a pandas DataFrame (time, open, high, low, close, volume), got "
                        f"{type(bars).__name__}")
    frame = _canonical(bars)
    if frame is None:
        frame = as_bars(bars, source="the bars")
    prices = frame[["open", "high", "low", "close"]].to_numpy()
    if not np.isfinite(prices).all() or (prices <= 0).any():
        bad = int((~np.isfinite(prices) | (prices <= 0)).any(axis=1).sum())
        raise DataError(f"{bad} bar(s) have missing, non-finite or non-positive prices; clean the data first "
                        f"(marketsynth data check)")
    if len(frame) < max(2, strategy.warmup):
        raise DataError(f"{len(frame)} bars are too few for {strategy.name}: it needs {strategy.warmup} bars before "
                        f"its first signal (and a backtest at least 2)")
    return frame


def _canonical(bars: pd.DataFrame) -> pd.DataFrame | None:
    """The bars as they are when they already form a bars frame (UTC times, strictly increasing; float prices):
    skips ``as_bars``' copy and sort, which dominate a million-bar backtest."""
    if any(c not in bars.columns for c in BAR_COLUMNS) or str(bars["time"].dtype) != TIME_DTYPE:
        return None
    if any(bars[c].dtype != np.float64 for c in BAR_COLUMNS[1:]):
        return None
    stamps = bars["time"].array.asi8
    if len(stamps) > 1 and not (np.diff(stamps) > 0).all():
        return None
    frame = bars if list(bars.columns) == BAR_COLUMNS else bars[BAR_COLUMNS]
    return frame.reset_index(drop=True) if not isinstance(frame.index, pd.RangeIndex) or frame.index.start else frame


def _describe_funding(funding, events: int) -> Any:
    if funding is None:
        return None
    if isinstance(funding, pd.Series):
        return {"series": True, "events": events}
    return {"rate_per_8h": float(funding), "events": events}


def _iso_times(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    out = frame.copy()
    for column in columns:
        if column in out and len(out):
            out[column] = pd.to_datetime(out[column], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return out
