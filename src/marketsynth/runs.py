"""``marketsynth run`` (``run_pipeline``): the pipeline's steps into a run directory that never loses a finished run.

The run directory (``marketsynth.rundir``) holds ``run.json`` next to the outputs; ``--overwrite`` builds the new run
beside the old one and swaps it in only when it succeeded, ``--resume`` continues an earlier run on its saved candles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from marketsynth.compute import torch_threads
from marketsynth.data.load import DataSource, MarketData, label_of, load, source_from_dict, source_to_dict
from marketsynth.errors import ConfigError
from marketsynth.models.registry import DEFAULT_MODEL, get_model_class
from marketsynth.pipeline import (
    TRAIN_FRACTION,
    Trained,
    default_num_samples,
    describe_split,
    evaluate_windows,
    generate,
    period,
    real_windows,
    reference_scores,
    split_bars,
    train_model,
)
from marketsynth.progress import Progress, or_silent
from marketsynth.rundir import run_directory


@dataclass
class RunResult:
    out: Path
    report: Path
    checkpoint: Path
    synthetic: Path
    metrics: Path
    data: MarketData
    trained: Trained
    evaluation: Any  # EvaluationResult
    reference: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def run_pipeline(*, out: str | Path, model: str | None = None, source: DataSource | None = None,
                 epochs: int | None = None,
                 seq_len: int | None = None, num_samples: int | None = None, seed: int = 0, device: str = "cpu",
                 repeats: int = 1, split: str | None = None, overwrite: bool = False, resume: bool = False,
                 threads: int | None = 1, diagnose: bool = False, stages: Progress | None = None) -> RunResult:
    """The main job into ``out``: load ``source`` (``data.load``: fetch, file, store or sample), split, train, generate,
    evaluate, report. Writes ``data.csv`` (the candles used), ``checkpoint/``, ``synthetic.csv``,
    ``metrics.json``, ``report.html`` and ``run.json`` (settings, sources, stage times, status).
    ``model`` defaults to ``DEFAULT_MODEL`` (autoregressive), ``seq_len`` to 24, ``split`` to chronological
    (``pipeline.split_bars``).

    ``resume`` continues an earlier run in ``out`` with its model, window length and ``data.csv`` (training to
    ``epochs`` in total), then regenerates, re-evaluates and rewrites the report. ``overwrite`` builds the new
    run beside the old one and replaces it only when everything succeeded. ``threads``: torch intra-op threads
    (see ``marketsynth.compute``). ``diagnose`` adds what gives the synthetic windows away to the metrics and the
    report (``evaluation.diagnosis``).
    """
    with torch_threads(threads):
        return _run(model=model, out=Path(out), source=source, epochs=epochs, seq_len=seq_len, num_samples=num_samples,
                    seed=seed, device=device, repeats=repeats, overwrite=overwrite, resume=resume, split=split,
                    diagnose=diagnose, stages=or_silent(stages))


def _run(*, model, out: Path, source, epochs, seq_len, num_samples, seed, device, repeats, overwrite, resume,
         split, diagnose, stages: Progress) -> RunResult:
    from marketsynth.data.io import read_bars_file, write_bars_file
    from marketsynth.evaluation.diagnosis import real_clock

    if source is None and not resume:
        raise ConfigError("say where the candles come from: --csv FILE, --sample NAME or --symbol S --interval I")
    with run_directory(out, kind="run", overwrite=overwrite, resume=resume, resumable=True,
                       worth_keeping=lambda folder: (folder / "data.csv").exists()) as run:
        previous, work = run.previous, run.work
        before = (previous or {}).get("settings", {})
        for name, given in (("model", model), ("seq-len", seq_len), ("split", split)):
            saved = before.get(name.replace("-", "_"))
            if previous is not None and given is not None and str(given).lower() != str(saved):
                raise ConfigError(f"--resume continues {out} with --{name} {saved}; drop --{name} {given} or pass "
                                  f"--overwrite to start again")
        model = (model or before.get("model") or DEFAULT_MODEL).lower()
        seq_len = seq_len or before.get("seq_len") or 24
        split = split or before.get("split") or "chronological"
        epochs = epochs or before.get("epochs") or get_model_class(model).default_epochs
        seconds: dict[str, float] = {}
        run.record["settings"] = {"model": model, "epochs": epochs, "seq_len": seq_len, "seed": seed, "device": device,
                                  "repeats": repeats, "train_fraction": TRAIN_FRACTION, "split": split,
                                  "diagnose": diagnose}
        tic = time.perf_counter()
        if previous is not None:
            if not (work / "data.csv").is_file():
                raise ConfigError(f"the run in {out} stopped before its candles were saved; pass --overwrite to "
                                  f"start it again")
            saved = source_from_dict(previous["source"])
            data = MarketData(read_bars_file(work / "data.csv"), saved, previous.get("timeframe"),
                              previous.get("adjacent"), label_of(saved), previous.get("data", {}))
        else:
            run.write()
            data = load(source, progress=stages)
            write_bars_file(data.bars, work / "data.csv")
        seconds["data"] = time.perf_counter() - tic
        run.write(source=source_to_dict(data.source), data=data.description, timeframe=data.timeframe,
                  adjacent=data.adjacent)
        train_bars, test_bars = split_bars(data.bars, seq_len=seq_len, split=split)
        run.record["split"] = describe_split(data.bars, train_bars, test_bars, split)
        trained = train_model(model, train_bars, out=work / "checkpoint", adjacent=data.adjacent, seq_len=seq_len,
                              epochs=epochs, seed=seed, device=device, resume=previous is not None, stages=stages,
                              source=run.record["source"])
        seconds["train"] = trained.seconds
        test_w, train_w = (real_windows(test_bars, seq_len, data.adjacent),
                           real_windows(train_bars, seq_len, data.adjacent))
        tic = time.perf_counter()
        n = num_samples or default_num_samples(len(test_w))
        frame = generate(trained.checkpoint, n, seed=seed, output=work / "synthetic.csv", stages=stages)
        seconds["generate"] = time.perf_counter() - tic
        tic = time.perf_counter()
        reference = reference_scores(test_w, train_w, seed=seed, stages=stages)
        result = evaluate_windows(test_w, frame, train=train_w, seq_len=seq_len, seed=seed, repeats=repeats,
                                  stages=stages, label=trained.checkpoint.model.name,
                                  diagnose=real_clock(test_bars, seq_len, data.adjacent) if diagnose else False)
        result.to_json(work / "metrics.json")
        run.record["reference"] = reference
        seconds["evaluate"] = time.perf_counter() - tic
        tic = time.perf_counter()
        stages.start("report", 1, "report.html")
        write_run_report(work / "report.html", data=data, trained=trained, result=result, real=test_w,
                         synthetic=frame, model_dir=work / "checkpoint", split=run.record["split"],
                         reference=reference)
        stages.finish("report", "report.html")
        seconds["report"] = time.perf_counter() - tic
        run.record.update(epochs_trained=trained.epochs, samples=n,
                          seconds={k: round(v, 2) for k, v in seconds.items()},
                          outputs={"report": "report.html", "checkpoint": "checkpoint", "synthetic": "synthetic.csv",
                                   "metrics": "metrics.json", "data": "data.csv"})
    return RunResult(out, out / "report.html", out / "checkpoint", out / "synthetic.csv", out / "metrics.json",
                     data, trained, result, reference, seconds)


def write_run_report(path: Path, *, data: MarketData, trained: Trained, result, real: np.ndarray, synthetic,
                     model_dir: Path, split: dict[str, Any], reference: dict[str, float] | None = None) -> Path:
    """The HTML report of one run (``evaluation.report.write_report``) with what was trained on what."""
    from marketsynth.evaluation.inputs import windows_from_long_frame
    from marketsynth.evaluation.report import write_report

    model = trained.checkpoint.model
    how = f"{trained.epochs} epoch(s)" if model.iterative else "one fit"
    summary = {
        "data": f"{data.label}: {len(data.bars)} bars, {period(data.description)}",
        "trained on": split["train_text"],
        "evaluated on": split["test_text"],
        "model": f"{model.name}, {how} in {trained.seconds:.0f} s, seq_len {model.config.seq_len}",
    }
    if trained.stopped_by_budget:
        summary["model"] += " (stopped: time budget spent)"
    for name, score in (reference or {}).items():
        summary[f"reference {name.split('(')[0].strip()}"] = (
            f"{score:.3f} for real training-period windows against the held-out ones (one run): markets change "
            f"between the periods, so a model that reproduced its training data perfectly would score about this")
    synthetic_w = windows_from_long_frame(synthetic) if isinstance(synthetic, pd.DataFrame) else synthetic
    return write_report(path, title=f"marketsynth: {model.name} on {data.label}", result=result,
                        real_windows=real, synthetic_windows=synthetic_w, model_dir=model_dir, summary=summary)
