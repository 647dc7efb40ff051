"""``marketsynth augment`` (does synthetic training data help a learned strategy?) and ``marketsynth stress`` (a
strategy over many synthetic paths, e.g. a cgan's crash regime)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from marketsynth.cli.common import console, split_list, stage_display
from marketsynth.cli.options import data_source_options
from marketsynth.cli.trading_cmds import STRATEGY_HELP, _checkpoint, _slug, _with_device, parse_params
from marketsynth.data.load import load
from marketsynth.errors import ConfigError


def register(app: typer.Typer) -> None:
    app.command("augment")(augment)
    app.command("stress")(stress)


def _config(values: list[str] | None) -> dict:
    """``-O hidden_size=32`` → ``{"hidden_size": 32}`` (numbers parsed, the rest kept as text)."""
    import json

    out = {}
    for key, value in parse_params(values).items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _fees(fee_maker, fee_taker, slippage_bps, data):
    from marketsynth.trading import backtest_job as job

    settings = job.BacktestSettings(strategy="-", fee_maker=fee_maker, fee_taker=fee_taker, slippage_bps=slippage_bps)
    return job.costs_for(data, settings)


@data_source_options(required=True)
def augment(
    source=None,
    strategy: str = typer.Option(..., "--strategy", help="A strategy that learns: gbm | ensemble."),
    generator: str = typer.Option(..., "--generator", help="Generator name(s), comma-separated, trained inside each "
                                                           "fold: e.g. garch,autoregressive."),
    param: list[str] = typer.Option(None, "--param", "-p", help="Strategy parameter NAME=VALUE (repeatable)."),
    ratio: float = typer.Option(2.0, "--ratio", help="Synthetic bars per real training bar (> 0)."),
    seeds: int = typer.Option(5, "--seeds", help="Seeds per fold (strategy, generator and bootstrap seeds)."),
    seed: int = typer.Option(0, "--seed", help="The first seed."),
    folds: int = typer.Option(4, "--folds", help="Walk-forward folds."),
    embargo: int = typer.Option(24, "--embargo", help="Bars between each training period and its test period, "
                                                      "after the purge of the label horizon."),
    path_length: int = typer.Option(512, "--path-length", help="Bars per synthetic (and null) path."),
    gen_epochs: int = typer.Option(None, "--gen-epochs", help="Generator epochs (default: the model's)."),
    gen_option: list[str] = typer.Option(None, "--gen-option", "-O", help="Generator setting NAME=VALUE."),
    no_quality: bool = typer.Option(False, "--no-quality", help="Skip the synthetic-data quality block."),
    stress_generator: Path = typer.Option(None, "--stress", help="Also stress-test each arm on paths from this "
                                                                 "checkpoint (e.g. a cgan)."),
    stress_regime: str = typer.Option(None, "--stress-regime", help="Regime of the stress generator (crash)."),
    stress_temperature: float = typer.Option(None, "--stress-temperature", help="Temperature of the stress "
                                                                                "generator."),
    stress_num: int = typer.Option(200, "--stress-num", help="Stress paths."),
    stress_horizon: int = typer.Option(168, "--stress-horizon", help="Bars per stress path."),
    ruin: float = typer.Option(0.5, "--ruin", help="Survival: equity never below this fraction of capital."),
    capital: float = typer.Option(10_000.0, "--capital", help="Starting capital."),
    fee_maker: float = typer.Option(None, "--fee-maker", help="Maker fee per side (default: the exchange's)."),
    fee_taker: float = typer.Option(None, "--fee-taker", help="Taker fee per side (default: the exchange's)."),
    slippage_bps: float = typer.Option(0.0, "--slippage-bps", help="Slippage per fill in basis points."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | auto (generators and networks)."),
    out: Path = typer.Option(None, "--out", "-o", help="Output directory (default runs/augment-<strategy>-<data>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run in --out."),
) -> None:
    """The augmentation experiment: per walk-forward fold and seed, the strategy trained on real bars only, on real
    + synthetic bars from generators trained on the fold's training bars, and on real + a size-matched block
    bootstrap (null augmentation), each backtested on the fold's held-out bars with the same costs. Writes
    augment.json, augment.txt and augment.html."""
    from marketsynth.rundir import run_directory
    from marketsynth.trading.experiments.augment import AugmentSettings, check_settings
    from marketsynth.trading.experiments.report import augment_text, write_augment
    from marketsynth.trading.experiments.synthetic import path_count

    params = _with_device(strategy, parse_params(param), device)
    settings = AugmentSettings(strategy=strategy, generators=split_list(generator), params=params, ratio=ratio,
                               seeds=seeds, seed=seed, folds=folds, embargo=embargo, path_length=path_length,
                               gen_epochs=gen_epochs, gen_config=_config(gen_option), capital=capital,
                               quality=not no_quality, device=device)
    path_count(ratio, 1, 1)
    cls = check_settings(settings)
    cls(**params)  # bad parameters fail before any work
    if stress_generator is None and (stress_regime or stress_temperature is not None):
        raise ConfigError("--stress-regime and --stress-temperature need --stress CHECKPOINT_DIR")
    stress_checkpoint = _checkpoint(stress_generator, device) if stress_generator is not None else None
    out = out or Path("runs") / f"augment-{cls.name}-{_slug(source)}"
    with run_directory(out, kind="augment", overwrite=overwrite) as run, stage_display() as progress:
        data = load(source, progress=progress)
        costs = _fees(fee_maker, fee_taker, slippage_bps, data)
        stress = None
        if stress_checkpoint is not None:
            from marketsynth.trading.experiments.stress import check_stress_settings, stress_paths, warm_bars

            check_stress_settings(num=stress_num, horizon=stress_horizon, ruin=ruin)
            paths = stress_paths(stress_checkpoint, data.bars, num=stress_num, horizon=stress_horizon,
                                 warm=warm_bars(cls(**params)), seed=seed, regime=stress_regime,
                                 temperature=stress_temperature)
            stress = (paths, ruin)
        from marketsynth.trading.experiments.augment import run_augment

        result = run_augment(data, settings, costs=costs, stress=stress, progress=progress)
        progress.start("report", 1, "augment.json, .txt, .html")
        written = write_augment(run.work, result)
        progress.finish("report", "augment.html")
        run.write(settings=settings.to_dict(), data=data.description, seconds=round(result.seconds, 1))
    console.print(augment_text(result), markup=False, soft_wrap=True, end="")
    for name in written:
        console.print(f"{name + ':':<14}{out / name}", markup=False)


@data_source_options(required=False)
def stress(
    source=None,
    strategy: str = typer.Option(..., "--strategy", help="Strategy to stress: " + STRATEGY_HELP.removeprefix(
        "Strategy: ")),
    generator: Path = typer.Option(..., "--generator", help="Checkpoint directory of the generator (a cgan for "
                                                            "--regime crash, or a model with a temperature)."),
    model: Path = typer.Option(None, "--model", "-m", help="The strategy's model: a glow checkpoint for glow, or a "
                                                           "saved fitted gbm/ensemble; learners without one are "
                                                           "fitted on the real history."),
    param: list[str] = typer.Option(None, "--param", "-p", help="Strategy parameter NAME=VALUE (repeatable)."),
    regime: str = typer.Option(None, "--regime", help="Regime of a conditional generator, e.g. crash."),
    temperature: float = typer.Option(None, "--temperature", help="Sampling temperature (models that have one)."),
    num: int = typer.Option(1000, "--num", "-n", help="Synthetic paths."),
    horizon: int = typer.Option(168, "--horizon", help="Bars per path (after the warm real history)."),
    ruin: float = typer.Option(0.5, "--ruin", help="Survival: equity never below this fraction of capital."),
    warm: int = typer.Option(None, "--warm", help="Real bars before each path (default: twice the warm-up, >= 50)."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same paths."),
    allow_short: bool = typer.Option(False, "--allow-short", help="Let the strategy go short."),
    capital: float = typer.Option(10_000.0, "--capital", help="Starting capital."),
    fee_maker: float = typer.Option(None, "--fee-maker", help="Maker fee per side (default: Binance's)."),
    fee_taker: float = typer.Option(None, "--fee-taker", help="Taker fee per side (default: Binance's)."),
    slippage_bps: float = typer.Option(0.0, "--slippage-bps", help="Slippage per fill in basis points."),
    leverage: float = typer.Option(1.0, "--leverage", help="Leverage (isolated margin)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | auto."),
    out: Path = typer.Option(None, "--out", "-o", help="Output directory (default runs/stress-<strategy>-<model>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run in --out."),
) -> None:
    """Run a strategy over NUM synthetic paths of HORIZON bars, each started after real history so its indicators
    are warm: mean and worst return, survival rate, recovery time, the distribution of max drawdowns. Real history:
    the data-source options, else the data the generator was trained on. Writes stress.json and stress.html."""
    from marketsynth.risk.real_data import training_bars
    from marketsynth.rundir import run_directory
    from marketsynth.trading import backtest_job as job
    from marketsynth.trading.experiments.report import stress_rows, write_stress
    from marketsynth.trading.experiments.stress import check_stress_settings, run_stress, stress_paths, warm_bars
    from marketsynth.trading.strategies import get_strategy_class

    check_stress_settings(num=num, horizon=horizon, ruin=ruin)
    params = _with_device(strategy, parse_params(param), device)
    cls = get_strategy_class(strategy)
    checkpoint = _checkpoint(generator, device)
    from marketsynth.generation import regime_conditions

    regime_conditions(checkpoint.model, regime, 1)  # an unknown regime fails before any data is read
    saved = None
    if model is not None and cls.needs_model is None:
        if not cls.learns:
            raise ConfigError(f"strategy {cls.name} uses no model; drop --model")
        saved = cls.load(model, **({"allow_short": True} if allow_short else {}))
    chosen = saved or job.make_strategy(strategy, params, allow_short=allow_short,
                                        checkpoint=_checkpoint(model, device) if cls.needs_model else None)
    notes = []
    if source is not None:
        data = load(source)
        history, where = data.bars, f"{data.label}, {len(data.bars)} bars"
    else:
        history, where = training_bars(checkpoint.meta)
        if history is None:
            raise ConfigError(f"no real history to start the paths from: {where}")
    if chosen.learns and saved is None:
        chosen.fit(history)
        notes.append(f"{chosen.name} was fitted on the real history ({where}) before the stress test")
    settings = job.BacktestSettings(strategy=strategy, fee_maker=fee_maker, fee_taker=fee_taker,
                                    slippage_bps=slippage_bps)
    costs = job.costs_for(None, settings)
    out = out or Path("runs") / f"stress-{chosen.name}-{Path(generator).name}"
    with run_directory(out, kind="stress", overwrite=overwrite) as run, stage_display() as progress:
        paths = stress_paths(checkpoint, history, num=num, horizon=horizon, warm=warm_bars(chosen, warm), seed=seed,
                             regime=regime, temperature=temperature)
        result = run_stress(chosen, paths, ruin=ruin, capital=capital, costs=costs, leverage=leverage,
                            progress=progress)
        result.notes = [*notes, f"real history: {where}", *result.notes]
        written = write_stress(run.work, result)
        run.write(settings=result.settings)
    g = result.settings["generator"]
    how = f"regime {regime}" if regime else f"temperature {temperature or 1:g}"
    console.print(f"stress: {chosen.name} over {num} paths × {horizon} bars from {g['name']} ({how}); "
                  f"{result.seconds:.1f} s", markup=False, soft_wrap=True)
    table = Table()
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for row in stress_rows(result.summary()):
        table.add_row(*row)
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}", markup=False, soft_wrap=True)
    for name in written:
        console.print(f"{name + ':':<13}{out / name}", markup=False)
