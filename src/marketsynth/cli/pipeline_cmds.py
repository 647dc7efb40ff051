"""``marketsynth run`` (fetch → store → train → generate → evaluate → report) and ``marketsynth compare``."""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from marketsynth.cli.common import console, err_console, time_range
from marketsynth.errors import ConfigError
from marketsynth.pipeline import CANDLE_MODELS, DEFAULT_EPOCHS, DEFAULT_MODEL, Stages

EPOCHS_HELP = "Epochs (default per model: " + ", ".join(f"{m} {e}" for m, e in DEFAULT_EPOCHS.items()) + ")."
DATA_HELP = "Candles: from an exchange (default bybit BTCUSDT 1h, last 365 days), --csv FILE or --sample NAME."


class RichStages(Stages):
    """One progress row per stage on stderr; a stage that starts again (the next model) restarts its own row."""

    def __init__(self, progress: Progress):
        self.progress, self.tasks = progress, {}

    def start(self, stage: str, total: float | None = None, note: str = "") -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total, note=note)
            return
        self.progress.reset(self.tasks[stage], total=total, note=note)
        if total is None:
            self._task(stage).total = None  # unknown until the stage says (reset keeps the old total)

    def advance(self, stage: str, steps: float = 1, note: str | None = None, total: float | None = None) -> None:
        if stage not in self.tasks:
            self.start(stage, total)
        fields = {} if note is None else {"note": note}
        self.progress.update(self.tasks[stage], advance=steps, total=total, **fields)

    def finish(self, stage: str, note: str = "") -> None:
        if stage not in self.tasks:
            self.start(stage)
        task = self._task(stage)
        total = task.total if task.total else max(task.completed, 1)
        self.progress.update(self.tasks[stage], total=total, completed=total, note=note)

    def _task(self, stage: str):
        return next(task for task in self.progress.tasks if task.id == self.tasks[stage])


@contextmanager
def _display():
    """The progress display; on failure it is cleared, so the error stays the only line."""
    with _progress() as progress:
        try:
            yield progress
        except BaseException:
            for task in progress.task_ids:
                progress.update(task, visible=False)
            raise


def _progress() -> Progress:
    import os

    return Progress(TextColumn("[bold]{task.description:<8}"), BarColumn(bar_width=30), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("{task.fields[note]}"), console=err_console,
                    disable=bool(os.environ.get("MARKETSYNTH_NO_PROGRESS")))


def _loader(*, csv, sample, exchange, symbol, interval, days, start, end, store, base_url, retries, no_fetch):
    """``load(stages) -> MarketData`` for the chosen source; option conflicts are one-line errors."""
    from marketsynth import pipeline

    if csv is not None and sample is not None:
        raise ConfigError("give either --csv FILE or --sample NAME, not both")
    if csv is not None or sample is not None:
        used = [f"--{n}" for n, v in (("exchange", exchange), ("symbol", symbol), ("days", days), ("start", start),
                                      ("base-url", base_url)) if v is not None]
        if used:
            raise ConfigError(f"--{'csv' if csv is not None else 'sample'} does not take {', '.join(used)}")
        if sample is not None:
            from marketsynth.data.samples import get_sample

            get_sample(sample)  # an unknown name fails before anything else happens
        return lambda stages: pipeline.load_market_data(csv=csv, sample=sample, stages=stages)
    exchange, symbol, interval = (exchange or "bybit").lower(), (symbol or "BTCUSDT").upper(), interval or "1h"
    lo, hi = time_range(start, end, days if days is not None or start is not None else 365)
    if no_fetch:
        return lambda stages: pipeline.load_market_data(symbol=symbol, interval=interval, exchange=exchange,
                                                        store=store, start=lo, end=hi, stages=stages)
    return lambda stages: pipeline.fetch_market_data(exchange=exchange, symbol=symbol, interval=interval, start=lo,
                                                     end=hi, store=store, base_url=base_url, retries=retries,
                                                     stages=stages)


def _label(csv, sample, symbol, interval) -> str:
    name = sample or (Path(csv).stem if csv else f"{(symbol or 'BTCUSDT').upper()}-{interval or '1h'}")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("compare")(compare)


_EXCHANGE = typer.Option(None, "--exchange", "-e", help="bybit | binance (default bybit).")
_SYMBOL = typer.Option(None, "--symbol", "-s", help="Symbol to fetch (default BTCUSDT).")
_INTERVAL = typer.Option(None, "--interval", "-i", help="Interval, e.g. 1h (default 1h).")
_DAYS = typer.Option(None, "--days", help="The last N days (default 365).")
_START = typer.Option(None, "--start", help="First bar, inclusive (UTC), instead of --days.")
_END = typer.Option(None, "--end", help="Last bar, exclusive (UTC); default now.")
_CSV = typer.Option(None, "--csv", help="Use a candle file (CSV/Parquet) instead of an exchange.")
_SAMPLE = typer.Option(None, "--sample", help="Use an offline dataset: sp500 | nasdaq (daily, from arch).")
_STORE = typer.Option(None, "--store", help="DuckDB file or postgresql:// URL (default marketsynth.duckdb).")
_BASE_URL = typer.Option(None, "--base-url", help="Override the exchange URL (testnet, local fake).")
_RETRIES = typer.Option(6, "--retries", min=1, help="Attempts per exchange request.")
_NO_FETCH = typer.Option(False, "--no-fetch", help="Use the candles already in the store; no network.")
_SEQ_LEN = typer.Option(24, "--seq-len", min=2, help="Bars per window.")
_SEED = typer.Option(0, "--seed", help="Seed for training, sampling and evaluation.")
_THREADS = typer.Option(1, "--threads", min=1, help="Torch CPU threads (small models: 1 is fastest).")
_SPLIT_HELP = ("chronological: train on the first 80%, evaluate on the last 20% | interleaved: hold out every "
               "fifth 240-bar chunk (both sets span the whole period).")
_REPEATS = typer.Option(1, "--repeats", min=1, help="Runs of each post-hoc classifier (3: mean ± std, slower).")


def run(
    exchange: str = _EXCHANGE, symbol: str = _SYMBOL, interval: str = _INTERVAL, days: int = _DAYS,
    start: str = _START, end: str = _END, csv: Path = _CSV, sample: str = _SAMPLE,
    model: str = typer.Option(None, "--model", "-m", help=" | ".join(CANDLE_MODELS) + f" (default {DEFAULT_MODEL})."),
    epochs: int = typer.Option(None, "--epochs", min=1, help=EPOCHS_HELP),
    seq_len: int = typer.Option(None, "--seq-len", min=2, help="Bars per window (default 24)."),
    num_samples: int = typer.Option(None, "--num-samples", "-n", min=1,
                                    help="Synthetic windows (default: as many as held-out real ones, 500-5000)."),
    seed: int = _SEED,
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N | auto."),
    store: str = _STORE, base_url: str = _BASE_URL, retries: int = _RETRIES, no_fetch: bool = _NO_FETCH,
    repeats: int = _REPEATS, threads: int = _THREADS,
    split: str = typer.Option(None, "--split", help=_SPLIT_HELP + " Default chronological."),
    out: Path = typer.Option(None, "--out", "-o", help="Run directory (default runs/<model>-<data>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run in --out (kept if this one fails)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out on its saved candles."),
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
    out = out or Path("runs") / f"{(model or DEFAULT_MODEL).lower()}-{_label(csv, sample, symbol, interval)}"
    load = None if resume else _loader(csv=csv, sample=sample, exchange=exchange, symbol=symbol, interval=interval,
                                       days=days, start=start, end=end, store=store, base_url=base_url,
                                       retries=retries, no_fetch=no_fetch)
    with _display() as progress:
        result = run_pipeline(model=model, out=out, load=load, epochs=epochs, seq_len=seq_len,
                              num_samples=num_samples, seed=seed, device=device, repeats=repeats,
                              split=split, overwrite=overwrite, resume=resume, threads=threads,
                              stages=RichStages(progress))
    counts = result.evaluation.verdict_counts()
    name, trained = result.trained.checkpoint.model.name, result.trained
    how = f"{trained.epochs} epoch(s)" if result.trained.checkpoint.model.iterative else "one fit"
    console.print(f"{name} on {result.data.label}: {how} in {trained.seconds:.0f} s; "
                  f"{counts['good']} metrics good, {counts['fair']} fair, {counts['poor']} poor")
    score = next((r.synthetic for r in result.evaluation.records if r.name.startswith("discriminative")), None)
    if score is not None and result.reference:
        console.print(f"discriminative score {score:.3f} (0 = indistinguishable from held-out real windows; real "
                      f"training-period windows score {next(iter(result.reference.values())):.3f})")
    console.print(f"report:     {result.report}")
    console.print(f"checkpoint: {result.checkpoint}")
    console.print(f"synthetic:  {result.synthetic}")
    console.print(f"metrics:    {result.metrics}")


def compare(
    models: str = typer.Option(",".join(CANDLE_MODELS), "--models", help="Comma-separated models."),
    exchange: str = _EXCHANGE, symbol: str = _SYMBOL, interval: str = _INTERVAL, days: int = _DAYS,
    start: str = _START, end: str = _END, csv: Path = _CSV, sample: str = _SAMPLE,
    budget_minutes: float = typer.Option(2.0, "--budget-minutes", min=0.01,
                                         help="Training wall-clock per model and seed."),
    epochs: int = typer.Option(None, "--epochs", min=1, help="At most this many epochs (default: what fits)."),
    seed: int = _SEED,
    seeds: int = typer.Option(2, "--seeds", min=1, help="Seeds per model (stability = std over them)."),
    seq_len: int = _SEQ_LEN, repeats: int = _REPEATS, threads: int = _THREADS,
    split: str = typer.Option("chronological", "--split", help=_SPLIT_HELP),
    store: str = _STORE, base_url: str = _BASE_URL, retries: int = _RETRIES, no_fetch: bool = _NO_FETCH,
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
    out = out or Path("runs") / f"compare-{_label(csv, sample, symbol, interval)}"
    load = _loader(csv=csv, sample=sample, exchange=exchange, symbol=symbol, interval=interval, days=days,
                   start=start, end=end, store=store, base_url=base_url, retries=retries, no_fetch=no_fetch)
    with _display() as progress:
        comparison, paths = run_compare(models=names, out=out, load=load, budget_seconds=budget_minutes * 60,
                                        seed=seed, seeds=seeds, seq_len=seq_len, repeats=repeats, epochs=epochs,
                                        split=split, overwrite=overwrite, threads=threads, stages=RichStages(progress))
    intro, table = comparison.to_markdown().split("\n\n")[1:3]
    console.print(intro, markup=False, soft_wrap=True)
    console.print(table, markup=False, soft_wrap=True)
    for kind in ("md", "json", "html"):
        console.print(f"{kind + ':':<6}{paths[kind]}")
