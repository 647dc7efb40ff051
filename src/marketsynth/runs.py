"""``marketsynth run`` (``run_pipeline``): the pipeline's steps into a run directory that never loses a finished run.

A run directory holds ``run.json`` (kind, status, settings, sources, stage times) next to its outputs. A new run
refuses a non-empty folder without ``run.json``, and an earlier run unless told ``--overwrite`` (or ``--resume``
for ``run``). With ``--overwrite`` the new run is built beside the old one (``.NAME.new``) and swapped in only
when it succeeded, so a failed or interrupted run leaves the earlier outputs as they were. ``compare`` uses the
same rules (``marketsynth.comparison``).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from marketsynth.compute import torch_threads
from marketsynth.errors import ConfigError
from marketsynth.pipeline import (
    DEFAULT_EPOCHS,
    DEFAULT_MODEL,
    TRAIN_FRACTION,
    MarketData,
    Stages,
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

RUN_FILE = "run.json"


def prepare_out(out: Path, *, kind: str, overwrite: bool = False, resume: bool = False) -> tuple[Path, dict | None]:
    """Where to write: ``(work_dir, previous run.json)``. Refuses (one line) to touch a directory that is not
    ours, or a finished/unfinished run without --overwrite or --resume. With --overwrite the new run is built
    beside the old one (``.NAME.new``) and swapped in by ``commit_out`` only when it succeeds."""
    previous = _read_run(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and previous is None)):
        raise ConfigError(f"{out} exists and is not a marketsynth run directory; choose another --out")
    if previous is None:
        if resume:
            raise ConfigError(f"--resume: {out} holds no run to continue; drop --resume")
        out.mkdir(parents=True, exist_ok=True)
        return out, None
    state = f"a {previous.get('status', 'unfinished')} {previous.get('kind', 'run')}"
    if resume:
        if previous.get("kind") != kind or kind != "run":
            raise ConfigError(f"{out} holds {state}, which cannot be resumed by '{kind}'; pass --overwrite")
        return out, previous
    if not overwrite:
        more = "--resume to continue it, " if kind == "run" and previous.get("kind") == "run" else ""
        raise ConfigError(f"{out} already holds {state}; pass {more}--overwrite to replace it, or choose another "
                          f"--out")
    staging = out.with_name(f".{out.name}.new")
    _remove(staging)
    staging.mkdir(parents=True)
    return staging, None


def commit_out(work: Path, out: Path) -> None:
    """Swap a staged run (``prepare_out`` with --overwrite) in place of the old one; a no-op otherwise."""
    if work == out:
        return
    backup = out.with_name(f".{out.name}.old")
    _remove(backup)
    out.rename(backup)
    work.rename(out)
    _remove(backup)


def discard_out(work: Path, out: Path) -> None:
    """After a failure: drop a staged run; the earlier run in ``out`` stays as it was."""
    if work != out:
        _remove(work)


def write_run(work: Path, record: dict[str, Any]) -> None:
    from marketsynth.data.io import atomic_path

    with atomic_path(work / RUN_FILE) as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")


def _read_run(out: Path) -> dict | None:
    try:
        return json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


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


def run_pipeline(*, out: str | Path, model: str | None = None, load=None, epochs: int | None = None,
                 seq_len: int | None = None, num_samples: int | None = None, seed: int = 0, device: str = "cpu",
                 repeats: int = 1, split: str | None = None, overwrite: bool = False, resume: bool = False,
                 threads: int | None = 1, stages: Stages | None = None) -> RunResult:
    """The main job into ``out``: ``load(stages) -> MarketData`` (fetch or load), split, train, generate,
    evaluate, report. Writes ``data.csv`` (the candles used), ``checkpoint/``, ``synthetic.csv``,
    ``metrics.json``, ``report.html`` and ``run.json`` (settings, sources, stage times, status).
    ``model`` defaults to ``DEFAULT_MODEL`` (autoregressive), ``seq_len`` to 24, ``split`` to chronological
    (``pipeline.split_bars``).

    ``resume`` continues an earlier run in ``out`` with its model, window length and ``data.csv`` (training to
    ``epochs`` in total), then regenerates, re-evaluates and rewrites the report. ``overwrite`` builds the new
    run beside the old one and replaces it only when everything succeeded. ``threads``: torch intra-op threads
    (see ``marketsynth.compute``).
    """
    with torch_threads(threads):
        return _run(model=model, out=Path(out), load=load, epochs=epochs, seq_len=seq_len, num_samples=num_samples,
                    seed=seed, device=device, repeats=repeats, overwrite=overwrite, resume=resume, split=split,
                    stages=stages or Stages())


def _run(*, model, out: Path, load, epochs, seq_len, num_samples, seed, device, repeats, overwrite, resume,
         split, stages: Stages) -> RunResult:
    from marketsynth.data.io import read_bars_file, write_bars_file

    created = not out.exists()
    work, previous = prepare_out(out, kind="run", overwrite=overwrite, resume=resume)
    before = (previous or {}).get("settings", {})
    for name, given in (("model", model), ("seq-len", seq_len), ("split", split)):
        saved = before.get(name.replace("-", "_"))
        if previous is not None and given is not None and str(given).lower() != str(saved):
            raise ConfigError(f"--resume continues {out} with --{name} {saved}; drop --{name} {given} or pass "
                              f"--overwrite to start again")
    model = (model or before.get("model") or DEFAULT_MODEL).lower()
    seq_len = seq_len or before.get("seq_len") or 24
    split = split or before.get("split") or "chronological"
    epochs = epochs or before.get("epochs") or DEFAULT_EPOCHS.get(model, 20)
    seconds: dict[str, float] = {}
    record: dict[str, Any] = {**(previous or {}), "kind": "run", "status": "running", "settings": {
        "model": model, "epochs": epochs, "seq_len": seq_len, "seed": seed, "device": device, "repeats": repeats,
        "train_fraction": TRAIN_FRACTION, "split": split}}
    try:
        tic = time.perf_counter()
        if previous is not None:
            if not (work / "data.csv").is_file():
                raise ConfigError(f"the run in {out} stopped before its candles were saved; pass --overwrite to "
                                  f"start it again")
            data = MarketData(read_bars_file(work / "data.csv"), previous["source"], previous.get("adjacent"))
        else:
            write_run(work, record)
            data = load(stages)
            write_bars_file(data.bars, work / "data.csv")
        seconds["data"] = time.perf_counter() - tic
        record.update(source=data.source, adjacent=data.adjacent)
        write_run(work, record)
        train_bars, test_bars = split_bars(data.bars, seq_len=seq_len, split=split)
        record["split"] = describe_split(data.bars, train_bars, test_bars, split)
        trained = train_model(model, train_bars, out=work / "checkpoint", adjacent=data.adjacent, seq_len=seq_len,
                              epochs=epochs, seed=seed, device=device, resume=previous is not None, stages=stages)
        seconds["train"] = trained.seconds
        test_w, train_w = real_windows(test_bars, seq_len, data.adjacent), real_windows(train_bars, seq_len,
                                                                                         data.adjacent)
        tic = time.perf_counter()
        n = num_samples or default_num_samples(len(test_w))
        frame = generate(trained.checkpoint, n, seed=seed, output=work / "synthetic.csv", stages=stages)
        seconds["generate"] = time.perf_counter() - tic
        tic = time.perf_counter()
        reference = reference_scores(test_w, train_w, seed=seed, stages=stages)
        result = evaluate_windows(test_w, frame, train=train_w, seq_len=seq_len, seed=seed, repeats=repeats,
                                  stages=stages, label=trained.checkpoint.model.name)
        result.to_json(work / "metrics.json")
        record["reference"] = reference
        seconds["evaluate"] = time.perf_counter() - tic
        tic = time.perf_counter()
        stages.start("report", 1, "report.html")
        write_run_report(work / "report.html", data=data, trained=trained, result=result, real=test_w,
                         synthetic=frame, model_dir=work / "checkpoint", split=record["split"], reference=reference)
        stages.finish("report", "report.html")
        seconds["report"] = time.perf_counter() - tic
        record.update(status="complete", epochs_trained=trained.epochs, samples=n,
                      seconds={k: round(v, 2) for k, v in seconds.items()},
                      outputs={"report": "report.html", "checkpoint": "checkpoint", "synthetic": "synthetic.csv",
                               "metrics": "metrics.json", "data": "data.csv"})
        write_run(work, record)
    except BaseException as exc:
        if work == out and previous is None and not (work / "data.csv").exists():
            (work / RUN_FILE).unlink(missing_ok=True)  # nothing worth resuming: leave no trace
            if created and not any(work.iterdir()):
                work.rmdir()
        elif work == out:
            write_run(work, {**record, "status": "failed", "error": str(exc).splitlines()[0] if str(exc) else
                             type(exc).__name__})
        discard_out(work, out)
        raise
    commit_out(work, out)
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
        "data": f"{data.label}: {data.source.get('bars', len(data.bars))} bars, {period(data.source)}",
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
