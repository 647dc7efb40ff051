"""``marketsynth scenarios``: VaR/CVaR, distribution and stress tests of a model's simulated horizon returns."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.table import Table

from marketsynth.cli.common import console, split_list, stage_display
from marketsynth.cli.options import data_source_options
from marketsynth.data.load import load
from marketsynth.errors import ConfigError
from marketsynth.models.capabilities import Temperature
from marketsynth.models.registry import models_with

TEMPERATURE_MODELS = ", ".join(models_with(Temperature))

LEVEL_TEXT = "Losses are positive fractions of capital"


def register(app: typer.Typer) -> None:
    app.command("scenarios")(scenarios)


@data_source_options(required=False)
def scenarios(
    source=None,
    model: Path = typer.Option(..., "--model", "-m", help="Checkpoint directory written by 'marketsynth train'."),
    num: int = typer.Option(2000, "--num", "-n", help="Scenarios to simulate (at least 10)."),
    horizon: int = typer.Option(24, "--horizon", help="Bars per scenario; the return is close_H / start - 1."),
    temperature: float = typer.Option(None, "--temperature",
                                      help="Sampling temperature of the base run (1 = as trained; default 1), only "
                                           "for models whose temperature widens the distribution: " + TEMPERATURE_MODELS
                                           + ". Others refuse it (cgan: use --regime crash)."),
    regime: str = typer.Option(None, "--regime", help="Regime of a conditional model (cgan): bull | bear | crash."),
    position: float = typer.Option(1.0, "--position",
                                   help="Exposure as a multiple of capital: 1 long, -1 short, 2 = 2x levered."),
    threshold: float = typer.Option(0.1, "--threshold", help="Loss fraction whose probability is reported."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same scenarios (and the same draws at every temperature)."),
    stress_temperatures: str = typer.Option(None, "--stress-temperatures",
                                            help="Temperatures of the stress table, comma-separated (default "
                                                 "1.0,1.5,2.0; only models with a temperature)."),
    json_path: Path = typer.Option(None, "--json", help="Also write every figure to this JSON file."),
    report: Path = typer.Option(None, "--report", help="Also write an HTML report (fan chart, loss histogram)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N | auto."),
    threads: int = typer.Option(0, "--threads", help="Torch CPU threads while sampling (0: torch's default); "
                                "1 is often several times faster on a busy machine."),
) -> None:
    """Simulate scenarios of HORIZON bars and report VaR/CVaR (95%, 99%), the P&L distribution and a stress table.

    Real data for comparison: the data-source options (--csv/--real FILE, --symbol/--interval, --sample), else the
    data the checkpoint was trained on.
    """
    from marketsynth import api
    from marketsynth.risk.real_data import training_bars
    from marketsynth.risk.scenarios import analyse, check_settings, regime_conditions

    temperatures = _floats(stress_temperatures) if stress_temperatures is not None else None
    check_settings(num=num, horizon=horizon, temperature=temperature, position=position, threshold=threshold,
                   stress_temperatures=temperatures)
    for path, suffix, option in ((json_path, ".json", "--json"), (report, ".html", "--report")):
        if path is not None and (path.suffix.lower() != suffix or not path.parent.exists()):
            raise ConfigError(f"{option} {path}: give a {suffix} file in an existing folder")
    if threads < 0:
        raise ConfigError(f"--threads must be 0 (torch's default) or more, got {threads}")
    checkpoint = api.load(model, device=device)
    regime_conditions(checkpoint.model, regime, 1)  # an unknown regime fails before any simulation
    if source is not None:
        data = load(source)
        bars, real_source = data.bars, f"{getattr(data.source, 'path', None) or data.label}, {len(data.bars)} bars"
    else:
        bars, real_source = training_bars(checkpoint.meta)
    with stage_display() as progress:
        analysis = analyse(checkpoint, num=num, horizon=horizon, temperature=temperature, regime=regime,
                           position=position, threshold=threshold, seed=seed, stress_temperatures=temperatures,
                           real_bars=bars, real_source=real_source, threads=threads,
                           progress=progress)
        progress.finish("scenarios", "")
    _print(analysis)
    if json_path is not None:
        json_path.write_text(json.dumps(analysis.to_dict(), indent=2) + "\n")
        console.print(f"wrote {json_path}")
    if report is not None:
        from marketsynth.risk.report import write_html

        console.print(f"wrote {write_html(analysis, report)}")


def _floats(text: str) -> list[float]:
    try:
        values = [float(item) for item in split_list(text)]
    except ValueError:
        raise ConfigError(f"--stress-temperatures '{text}' is not a list of numbers, e.g. 1.0,1.5,2.0") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ConfigError(f"--stress-temperatures '{text}' is not a list of numbers, e.g. 1.0,1.5,2.0")
    return values


def _print(analysis) -> None:
    from marketsynth.risk.measures import LEVELS
    from marketsynth.risk.report import (
        RISK_COLUMNS,
        STRESS_COLUMNS,
        distribution_rows,
        risk_rows,
        stress_row,
        temperature_text,
    )

    s, base, real = analysis.settings, analysis.base, analysis.real
    title = (f"{s['num']} scenarios × {s['horizon']} bars from {analysis.model['name']} "
             f"({temperature_text(s, short=True)}{', ' + s['regime'] if s['regime'] else ''}, "
             f"position {s['position']:g})")
    risk = Table(title=title)
    for name in RISK_COLUMNS:
        risk.add_column(name, justify="left" if name == "measure" else "right")
    for row in risk_rows(analysis):
        risk.add_row(*row)
    console.print(risk)
    first = base.tail(LEVELS[0])
    console.print(f"{LEVEL_TEXT}: VaR {first.level:.0%} = {first.var:.3f} → a loss of more than {first.var:.1%} "
                  f"happens in at most {1 - first.level:.0%} of scenarios; CVaR is the mean loss in that tail; "
                  f"± is the bootstrap standard error of the estimate.", soft_wrap=True)
    console.print(f"real data: {analysis.real_note}", soft_wrap=True)
    dist = Table(title="distribution of the horizon P&L")
    dist.add_column("statistic")
    dist.add_column("scenarios", justify="right")
    if real is not None:
        dist.add_column("real data", justify="right")
    for row in distribution_rows(analysis):
        dist.add_row(*row)
    console.print(dist)
    stress = Table(title=f"stress tests (same seed; P(loss > {s['threshold']:g}))")
    for name in STRESS_COLUMNS:
        stress.add_column(name, justify="left" if name in ("setting", "changes", "flag") else "right")
    for row in analysis.stress:
        stress.add_row(*stress_row(row))
    console.print(stress)
    for note in analysis.notes:
        console.print(f"note: {note}", soft_wrap=True, markup=False)
