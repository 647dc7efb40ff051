"""``marketsynth backtest`` and ``marketsynth signal``: run a strategy on candles, or ask it for its target now."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer
from rich.table import Table

from marketsynth.cli.common import console, stage_display
from marketsynth.cli.options import data_source_options
from marketsynth.data.load import FileSource, SampleSource, label_of, load
from marketsynth.errors import ConfigError
from marketsynth.trading.strategies import strategy_names

STRATEGY_HELP = "Strategy: " + " | ".join(strategy_names()) + "."
SHOWN_STATS = ("total_return", "cagr", "annual_volatility", "sharpe", "sortino", "calmar", "max_drawdown",
               "max_drawdown_duration", "win_rate", "profit_factor", "expectancy", "sqn", "exposure", "n_trades",
               "avg_trade_duration", "var_95", "cvar_95", "psr")
TONES = {"good": "green", "fair": "yellow", "poor": "bold red", "check": "magenta", "info": "dim"}


def register(app: typer.Typer) -> None:
    app.command("backtest")(backtest)
    app.command("signal")(signal)


def parse_params(values: list[str] | None) -> dict[str, str]:
    """``--param fast=10 --param slow=50`` → ``{"fast": "10", "slow": "50"}`` (the strategy coerces the types)."""
    params: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param '{item}': use NAME=VALUE, e.g. --param fast=20")
        params[key.strip()] = value.strip()
    return params


def _checkpoint(model: Path | None, device: str):
    if model is None:
        return None
    from marketsynth.checkpoint import load_checkpoint
    from marketsynth.training import resolve_device

    return load_checkpoint(model, device=resolve_device(device))


@data_source_options(required=False)
def backtest(
    source=None,
    strategy: str = typer.Option(..., "--strategy", help=STRATEGY_HELP),
    param: list[str] = typer.Option(None, "--param", "-p", help="Strategy parameter NAME=VALUE (repeatable)."),
    capital: float = typer.Option(10_000.0, "--capital", help="Starting capital in the quote currency."),
    fee_maker: float = typer.Option(None, "--fee-maker", help="Maker fee per side as a fraction (default: the "
                                                              "exchange's; Binance 0.0002, Bybit 0.0002)."),
    fee_taker: float = typer.Option(None, "--fee-taker", help="Taker fee per side as a fraction (default: the "
                                                              "exchange's; Binance 0.0005, Bybit 0.00055)."),
    slippage_bps: float = typer.Option(0.0, "--slippage-bps", help="Slippage per fill in basis points."),
    leverage: float = typer.Option(1.0, "--leverage", help="Leverage (isolated margin; liquidation on the bar's "
                                                           "adverse extreme)."),
    funding: str = typer.Option("auto", "--funding", help="auto (the stored funding series) | none | RATE per 8 h."),
    fill: str = typer.Option("open", "--fill", help="open: at the next bar's open | close: at the signal bar's close."),
    allow_short: bool = typer.Option(False, "--allow-short", help="Let the strategy go short."),
    stop_loss: float = typer.Option(None, "--stop-loss", help="Stop at this fraction below a long's entry (above a "
                                                              "short's), e.g. 0.05."),
    take_profit: float = typer.Option(None, "--take-profit", help="Take profit at this fraction, e.g. 0.1."),
    folds: int = typer.Option(4, "--folds", min=1, help="Walk-forward folds for strategies that learn."),
    mode: str = typer.Option("auto", "--mode", help="auto | vectorised | event (same results; event calls the "
                                                    "strategy bar by bar)."),
    model: Path = typer.Option(None, "--model", "-m", help="Checkpoint directory of the model a strategy needs "
                                                           "(glow)."),
    synthetic: Path = typer.Option(None, "--synthetic", help="Run on every path of a 'marketsynth generate' file "
                                                             "and report each metric's distribution."),
    path_interval: str = typer.Option(None, "--path-interval", help="Bar length of --synthetic paths (default 1h)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N | auto (models and learning "
                                                       "strategies)."),
    out: Path = typer.Option(None, "--out", "-o", help="Output directory (default runs/backtest-<strategy>-<data>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the backtest in --out."),
) -> None:
    """Backtest a strategy with real trading costs: fees per side, slippage, funding every 8 h, leverage with
    isolated-margin liquidation. Writes trades.csv, equity.csv, stats.json and tearsheet.html into --out.

    Fills at the next bar's open unless --fill close; strategies that learn run walk-forward (fit on each fold's
    training bars, trade its test bars).
    """
    from marketsynth.data.io import read_table
    from marketsynth.rundir import run_directory
    from marketsynth.trading import backtest_job as job

    settings = job.BacktestSettings(strategy=strategy, params=parse_params(param), capital=capital,
                                    fee_maker=fee_maker, fee_taker=fee_taker, slippage_bps=slippage_bps,
                                    leverage=leverage, funding=funding, fill=fill, stop_loss=stop_loss,
                                    take_profit=take_profit, folds=folds, mode=mode)
    checkpoint = _checkpoint(model, device)
    settings.params = _with_device(strategy, settings.params, device)
    job.make_strategy(strategy, settings.params, allow_short=allow_short, checkpoint=checkpoint)  # fail early

    def factory():
        return job.make_strategy(strategy, settings.params, allow_short=allow_short, checkpoint=checkpoint)

    name = factory().name
    notes: list[str] = []
    if synthetic is not None:
        if source is not None:
            raise ConfigError("--synthetic runs on the generated paths; drop the data-source options")
        out = out or Path("runs") / f"backtest-{name}-{synthetic.stem}"
        costs = job.costs_for(None, settings)
        rate = job.funding_for(None, funding, notes)
        paths = job.synthetic_paths(read_table(synthetic), path_interval or "1h")
        with run_directory(out, kind="backtest", overwrite=overwrite) as run, stage_display() as progress:
            per_path = job.run_paths(paths, factory, settings, costs=costs, funding=rate, progress=progress)
            progress.finish("paths", f"{len(per_path)} paths")
            distribution = job.path_distribution(per_path)
            written = job.write_path_outputs(run.work, per_path, distribution, settings.to_dict())
            run.write(settings=settings.to_dict(), synthetic=str(synthetic))
        _print_distribution(distribution, len(per_path))
        _print_written(out, written)
        return
    if source is None:
        raise ConfigError("say where the candles come from: --csv FILE, --sample NAME, or --symbol S --interval I "
                          "(or --synthetic FILE)")
    out = out or Path("runs") / f"backtest-{name}-{_slug(source)}"
    with run_directory(out, kind="backtest", overwrite=overwrite) as run, stage_display() as progress:
        data = load(source, progress=progress)
        costs = job.costs_for(data, settings)
        rates = job.funding_for(data, funding, notes)
        result = job.run_backtest(data, factory, settings, costs=costs, funding=rates, progress=progress)
        stats = job.stats_of(result, settings, data, notes)
        progress.start("report", 1, "tearsheet.html")
        written = job.write_outputs(run.work, result, stats, title=f"marketsynth backtest: {name} on {data.label}")
        progress.finish("report", "tearsheet.html")
        run.write(settings=settings.to_dict(), data=data.description)
    console.print(stats_table(stats, title=f"backtest: {name} on {data.label}"))
    for note in notes:
        console.print(f"note: {note}", markup=False, soft_wrap=True)
    if result.wiped_out is not None:
        console.print(f"note: the account was wiped out at {result.wiped_out:%Y-%m-%d %H:%M} UTC", markup=False)
    _print_written(out, {k: out / v.name for k, v in written.items()})


@data_source_options(fetch_default=True)
def signal(
    source=None,
    strategy: str = typer.Option(..., "--strategy", help=STRATEGY_HELP),
    param: list[str] = typer.Option(None, "--param", "-p", help="Strategy parameter NAME=VALUE (repeatable)."),
    allow_short: bool = typer.Option(False, "--allow-short", help="Let the strategy go short."),
    model: Path = typer.Option(None, "--model", "-m", help="Checkpoint directory of the model a strategy needs."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N | auto."),
) -> None:
    """The strategy's target position now: fetches up to the last closed candle (or reads --csv/--store) and prints
    the target, its confidence and the bar it is based on. Strategies that learn are fitted on the bars before it.
    """
    from marketsynth.trading import backtest_job as job
    from marketsynth.trading.strategy import History

    if source is None:
        raise ConfigError("say which market: --symbol S --interval I (fetched up to the last closed candle), or "
                          "--csv FILE")
    chosen = job.make_strategy(strategy, _with_device(strategy, parse_params(param), device), allow_short=allow_short,
                               checkpoint=_checkpoint(model, device))
    if not isinstance(source, FileSource | SampleSource) and source.start is None:
        source = _with_history(source, chosen)
    with stage_display() as progress:
        data = load(source, progress=progress)
    bars = data.bars
    if len(bars) < chosen.warmup:
        raise ConfigError(f"{len(bars)} bars are fewer than {chosen.name}'s warm-up of {chosen.warmup}; give an "
                          f"earlier --start or more --days")
    if chosen.learns:
        chosen.fit(bars.iloc[:-1].reset_index(drop=True))
    decided = chosen.on_bar(History(bars))
    last = bars.iloc[-1]
    confidence = "n/a" if decided.confidence is None else f"{decided.confidence:.3f}"
    console.print(f"{chosen.name} on {data.label}: target {decided.target:+.3f} (confidence {confidence})")
    console.print(f"based on the bar opened {last['time']:%Y-%m-%d %H:%M} UTC (close {last['close']:,.6g}), the last "
                  f"closed one of {len(bars):,}")


def _with_device(strategy: str, params: dict, device: str) -> dict:
    """``--device`` for strategies that train networks (a ``device`` parameter), unless ``--param device=`` says."""
    from marketsynth.trading.strategies import get_strategy_class

    if "device" in get_strategy_class(strategy).parameter_names() and "device" not in params:
        return {**params, "device": device}
    return params


def _with_history(source, strategy):
    """An exchange/store source without a period: enough bars for the warm-up (and a year for learners), up to
    now."""
    from dataclasses import replace

    from marketsynth.timeframes import parse_timeframe

    step = parse_timeframe(source.interval).delta
    bars = max(2 * strategy.warmup + 10, 24 * 365 if strategy.learns else 0)
    end = pd.Timestamp.now(tz="UTC")
    return replace(source, start=end - step * bars, end=end)


def stats_table(stats: dict, *, title: str) -> Table:
    """The headline statistics with their plain-language verdicts."""
    from marketsynth.trading.tearsheet import fmt
    from marketsynth.trading.verdicts import verdict

    table = Table(title=title, title_justify="left")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    table.add_column("verdict")
    for name in SHOWN_STATS:
        if name not in stats:
            continue
        found = verdict(name, stats[name], stats)
        style = TONES.get(found.tone, "")
        table.add_row(name, fmt(stats[name], _kind(name)), f"[{style}]{found.text}[/]" if style and found.text
                      else found.text)
    return table


def _kind(name: str) -> str:
    if name in ("total_return", "cagr"):
        return "pct"
    if name in ("annual_volatility", "max_drawdown", "win_rate", "exposure", "var_95", "cvar_95"):
        return "frac"
    if name == "psr":
        return "prob"
    if name in ("n_trades",):
        return "int"
    if name in ("max_drawdown_duration", "avg_trade_duration"):
        return "days"
    return "ratio"


def _print_distribution(distribution: dict, paths: int) -> None:
    table = Table(title=f"backtest over {paths} synthetic paths", title_justify="left")
    for column in ("metric", "mean", "p5", "median", "p95"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for metric, values in distribution.items():
        if not values.get("paths"):
            table.add_row(metric, "n/a", "", "", "")
            continue
        table.add_row(metric, *(f"{values[k]:.4g}" for k in ("mean", "p5", "median", "p95")))
    console.print(table)


def _print_written(out: Path, written: dict) -> None:
    for name in written:
        console.print(f"{name + ':':<16}{out / name}", markup=False)


def _slug(source) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label_of(source).replace(".csv", "").replace(".parquet", ""))
