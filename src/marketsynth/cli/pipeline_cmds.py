"""``marketsynth run`` (fetch → store → train → generate → evaluate → report) and ``marketsynth compare``."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from marketsynth.cli.common import console, stage_display
from marketsynth.cli.options import data_source_options
from marketsynth.errors import ConfigError
from marketsynth.models.registry import DEFAULT_MODEL, candle_models, get_model_class

CANDLE_MODELS = candle_models()  # what run and compare train
EPOCHS_HELP = ("Epochs (default per model: "
               + ", ".join(f"{m} {get_model_class(m).default_epochs}" for m in CANDLE_MODELS) + ").")
DATA_HELP = "Candles: from an exchange (default bybit BTCUSDT 1h, last 365 days), --csv FILE or --sample NAME."


def _label(source) -> str:
    from marketsynth.data.load import FileSource, SampleSource

    if isinstance(source, SampleSource):
        name = source.name
    elif isinstance(source, FileSource):
        name = Path(source.path).stem
    else:
        name = f"{source.symbol}-{source.interval}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)


def _budget_seconds(minutes: float | None, epochs: int | None) -> float | None:
    """``--budget-minutes`` in seconds; 2 minutes unless only ``--epochs`` was given (then no budget)."""
    if minutes is None:
        return None if epochs is not None else 120.0
    return minutes * 60


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("compare")(compare)


_SEQ_LEN = typer.Option(24, "--seq-len", min=2, help="Bars per window.")
_SEED = typer.Option(0, "--seed", help="Seed for training, sampling and evaluation.")
_THREADS = typer.Option(1, "--threads", min=1, help="Torch CPU threads (small models: 1 is fastest).")
_SPLIT_HELP = ("chronological: train on the first 80%, evaluate on the last 20% | interleaved: hold out every "
               "fifth 240-bar chunk (both sets span the whole period).")
_REPEATS = typer.Option(1, "--repeats", min=1, help="Runs of each post-hoc classifier (3: mean ± std, slower).")


@data_source_options(fetch_default=True, default_symbol=("bybit", "BTCUSDT", "1h", 365))
def run(
    source=None,
    model: str = typer.Option(None, "--model", "-m", help=" | ".join(CANDLE_MODELS) + f" (default {DEFAULT_MODEL})."),
    epochs: int = typer.Option(None, "--epochs", min=1, help=EPOCHS_HELP),
    seq_len: int = typer.Option(None, "--seq-len", min=2, help="Bars per window (default 24)."),
    num_samples: int = typer.Option(None, "--num-samples", "-n", min=1,
                                    help="Synthetic windows (default: as many as held-out real ones, 500-5000)."),
    seed: int = _SEED,
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N | auto."),
    repeats: int = _REPEATS, threads: int = _THREADS,
    split: str = typer.Option(None, "--split", help=_SPLIT_HELP + " Default chronological."),
    out: Path = typer.Option(None, "--out", "-o", help="Run directory (default runs/<model>-<data>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run in --out (kept if this one fails)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out on its saved candles."),
    diagnose: bool = typer.Option(False, "--diagnose", help="Also find what gives the synthetic windows away "
                                                            "(report section and metrics.json; about a minute)."),
) -> None:
    """The main job in one command: fetch → store → train → generate → evaluate → report.

    Trains on the first 80% of the candles and evaluates on the held-out last 20% (or --split interleaved).
    Writes report.html, metrics.json, synthetic.csv, checkpoint/, data.csv and run.json into --out.
    """
    from marketsynth.runs import run_pipeline

    if model is not None and model.lower() not in CANDLE_MODELS:
        from marketsynth.models.registry import get_model_class

        get_model_class(model)  # unknown names: suggestion; known ones: refused by the pipeline
    if out is None and resume:
        raise ConfigError("--resume needs --out, the run directory to continue")
    out = out or Path("runs") / f"{(model or DEFAULT_MODEL).lower()}-{_label(source)}"
    with stage_display() as progress:
        result = run_pipeline(model=model, out=out, source=None if resume else source, epochs=epochs, seq_len=seq_len,
                              num_samples=num_samples, seed=seed, device=device, repeats=repeats,
                              split=split, overwrite=overwrite, resume=resume, threads=threads,
                              diagnose=diagnose, stages=progress)
    counts = result.evaluation.verdict_counts()
    name, trained = result.trained.checkpoint.model.name, result.trained
    how = f"{trained.epochs} epoch(s)" if result.trained.checkpoint.model.iterative else "one fit"
    console.print(f"{name} on {result.data.label}: {how} in {trained.seconds:.0f} s; "
                  f"{counts['good']} metrics good, {counts['fair']} fair, {counts['poor']} poor")
    score = next((r.synthetic for r in result.evaluation.records if r.name.startswith("discriminative")), None)
    if score is not None and result.reference:
        console.print(f"discriminative score {score:.3f} (0 = indistinguishable from held-out real windows; real "
                      f"training-period windows score {next(iter(result.reference.values())):.3f})")
    if result.evaluation.diagnosis is not None:
        console.print("what gives the synthetic windows away (most noticeable first):")
        for line in result.evaluation.diagnosis.summary_lines(5):
            console.print(f"  {line}", markup=False, soft_wrap=True)
    console.print(f"report:     {result.report}")
    console.print(f"checkpoint: {result.checkpoint}")
    console.print(f"synthetic:  {result.synthetic}")
    console.print(f"metrics:    {result.metrics}")


@data_source_options(fetch_default=True, default_symbol=("bybit", "BTCUSDT", "1h", 365))
def compare(
    source=None,
    models: str = typer.Option(",".join(CANDLE_MODELS), "--models", help="Comma-separated models."),
    budget_minutes: float = typer.Option(None, "--budget-minutes", min=0.01,
                                         help="Training wall-clock per model and seed (default 2; with --epochs "
                                              "alone: no budget, exactly those epochs)."),
    epochs: int = typer.Option(None, "--epochs", min=1, help="At most this many epochs (default: what fits)."),
    seed: int = _SEED,
    seeds: int = typer.Option(2, "--seeds", min=1, help="Seeds per model (stability = std over them)."),
    seq_len: int = _SEQ_LEN, repeats: int = _REPEATS, threads: int = _THREADS,
    split: str = typer.Option("chronological", "--split", help=_SPLIT_HELP),
    out: Path = typer.Option(None, "--out", "-o", help="Output directory (default runs/compare-<data>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the comparison in --out."),
) -> None:
    """Train several models under the same time budget on the same split; compare them on held-out data.

    Writes comparison.md, comparison.json and comparison.html (plus each model's checkpoint, samples and
    metrics under models/) into --out.
    """
    from marketsynth.cli.common import split_list
    from marketsynth.comparison import run_compare

    names = split_list(models)
    out = out or Path("runs") / f"compare-{_label(source)}"
    with stage_display() as progress:
        comparison, paths = run_compare(models=names, out=out, source=source,
                                        budget_seconds=_budget_seconds(budget_minutes, epochs),
                                        seed=seed, seeds=seeds, seq_len=seq_len, repeats=repeats, epochs=epochs,
                                        split=split, overwrite=overwrite, threads=threads, stages=progress)
    intro, table = comparison.to_markdown().split("\n\n")[1:3]
    console.print(intro, markup=False, soft_wrap=True)
    console.print(table, markup=False, soft_wrap=True)
    for kind in ("md", "json", "html"):
        console.print(f"{kind + ':':<6}{paths[kind]}")
