"""The main job as steps: candles → chronological split → train → generate → evaluate → report.

``marketsynth.runs`` chains them for one model into a run directory (``marketsynth run``);
``marketsynth.comparison`` runs them for several models under one time budget (``marketsynth compare``,
``benchmarks/quality.py``). Every step takes plain keyword
arguments and reports to an optional ``Progress`` (``marketsynth.progress``) (the CLI draws one progress row per stage).

Split (``split_bars``): by default the first 80 % of the bars train the model and windows cut from the last 20 %
(never seen in training) are the real side of every metric; ``interleaved`` holds out every fifth 10-day chunk
instead. The training windows are given to ``evaluate`` for TSTR and memorization.

Default epochs (each model class's ``default_epochs``), chosen so that ``marketsynth run`` on a year of 1h
candles (about 7,000 training windows of 24 bars) trains in minutes on one CPU core. Measured as CPU time with one
torch thread on this project's shared 2-core development machine (wall time is about the same on a free core):

=========  ======  ====================================================================  ===========
model      epochs  per epoch (7,000 windows)                                             training
=========  ======  ====================================================================  ===========
garch         1    one maximum-likelihood fit                                            ~2 s
dcgan        20    ~13 s                                                                 ~4.5 min
wgan-gp       8    ~40 s (5 critic steps per generator step)                             ~5.5 min
timegan      30    7 embedding (~2 s), 7 supervised (~1 s), 16 joint epochs (~22 s)      ~6.5 min
autoregr.    10    ~20 s (7,000 sequences of 96 bars, maximum likelihood)                ~3.5 min
=========  ======  ====================================================================  ===========

With a time budget (``budget_seconds``) the epochs are planned instead: a few training steps at evenly spaced
points of the schedule are timed on a throwaway copy of the model (TimeGAN's steps cost 10x more in its joint
phase than in pre-training, so timing the first epoch would mislead), the schedule is sized to fit, and an
``on_epoch`` hook stops training cleanly (after that epoch's checkpoint) if the budget runs out anyway.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from marketsynth import splits
from marketsynth.checkpoint import Checkpoint, is_checkpoint, load_checkpoint
from marketsynth.compute import torch_threads
from marketsynth.data.load import span
from marketsynth.errors import ConfigError, DataError, ModelError
from marketsynth.models.registry import candle_models, get_model_class
from marketsynth.progress import Progress

TRAIN_FRACTION = 0.8
SPLITS = ("chronological", "interleaved")  # see split_bars
CHUNK_BARS = 240
MAX_SAMPLES = 5000  # evaluate() uses at most this many windows per set
_PROBE_POINTS = 6  # schedule positions timed when planning epochs for a budget
_EPOCH_CAP = 100_000  # epochs a budget may plan when no --epochs caps it
_BUDGET_SAFETY = 0.85  # plan to use this share of the budget (timings on a shared machine vary)


@dataclass
class Trained:
    checkpoint: Checkpoint
    epochs: int  # epochs trained (1 for one-pass models)
    planned_epochs: int
    seconds: float
    stopped_by_budget: bool = False


# ---- data ----------------------------------------------------------------------------------------------
def split_bars(bars: pd.DataFrame, *, seq_len: int, train_fraction: float = TRAIN_FRACTION,
               split: str = "chronological", chunk_bars: int = CHUNK_BARS):
    """``(train, test)`` bars; no bar is in both sets' windows.

    ``chronological``: the first ``train_fraction`` trains, the rest is held out (does the model carry over to
    a later period?). The test part starts with the last training bar, only as its first window's anchor
    (previous close). ``interleaved``: the bars are cut into chunks of ``chunk_bars`` (240 = 10 days of 1h bars)
    and every k-th chunk is held out (k = 5 for 80 %), each with the bar before it as anchor, so both sets span
    the whole period and its market regimes, as in ``evaluation.real_vs_real_floor`` (does the model capture
    this period's candles?).
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}'; use {' or '.join(SPLITS)}")
    held_out = 1 - train_fraction
    if split == "chronological":
        need = int(math.ceil((seq_len + 2) / held_out)) + seq_len
        if len(bars) < need:
            raise DataError(f"{len(bars)} bars are too few to train and evaluate with --seq-len {seq_len}: "
                            f"need at least {need} (the last {held_out:.0%} is held out)")
        fold = splits.chronological(len(bars), train_fraction)
        test = slice(fold.test.start - 1, fold.test.stop)  # the last training bar anchors the first test window
        return bars.iloc[fold.train].reset_index(drop=True), bars.iloc[test].reset_index(drop=True)
    every = max(2, int(round(1 / held_out)))
    if chunk_bars <= seq_len + 1 or len(bars) < every * chunk_bars:
        raise DataError(f"an interleaved split needs chunks longer than --seq-len {seq_len} + 1 and at least "
                        f"{every} chunks of {chunk_bars} bars; {len(bars)} bars are too few")
    test = splits.interleaved(len(bars), chunk_bars, 1 / every)
    with_anchor = splits.near(test, 1, 0)  # each held-out chunk with the bar before it as anchor
    return bars[~test].reset_index(drop=True), bars[with_anchor].reset_index(drop=True)


def describe_split(bars: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame, split: str) -> dict[str, Any]:
    """What ``split_bars`` did, for run.json and reports: ``mode``, spans, ``train_text`` and ``test_text``."""
    held = len(bars) - len(train)
    if split == "chronological":
        first, last = span(train), span(test.iloc[1:])
        texts = (f"{period(first)} ({len(train)} bars, the first {len(train) / len(bars):.0%})",
                 f"{period(last)} ({held} held-out bars)")
    else:
        first, last = span(train), span(test)
        texts = (f"{len(train)} bars of {period(span(bars))}: all but every fifth chunk of {CHUNK_BARS} bars",
                 f"{held} held-out bars: every fifth chunk of {CHUNK_BARS} bars (interleaved split)")
    return {"mode": split, "train": first, "test": last, "held_out_bars": held, "train_text": texts[0],
            "test_text": texts[1]}


def period(described: dict[str, Any]) -> str:
    """``2023-01-01 00:00 → 2023-06-01 00:00`` from a ``span``."""
    start, end = (str(described.get(k, "?"))[:16].replace("T", " ") for k in ("start", "end"))
    return f"{start} → {end}"


def real_windows(bars: pd.DataFrame, seq_len: int, adjacent: str | None) -> np.ndarray:
    """Candle windows ``[n, seq_len, 5]`` in price units, cut exactly as the models' training windows are."""
    from marketsynth.evaluation import candle_windows

    return candle_windows(bars, seq_len, 1, adjacent)


# ---- training ----------------------------------------------------------------------------------------------
class _BudgetSpent(Exception):
    def __init__(self, epoch: int):
        self.epoch = epoch


def train_model(model: str, bars: pd.DataFrame, *, out: str | Path, adjacent: str | None = None, seq_len: int = 24,
                epochs: int | None = None, budget_seconds: float | None = None, seed: int = 0,
                device: str = "cpu", resume: bool = False, stages: Progress | None = None,
                source: dict[str, Any] | None = None) -> Trained:
    """Fit ``model`` on ``bars`` into the checkpoint directory ``out``; epochs default to the model's own.

    ``source``: where the bars came from (recorded in the checkpoint). With ``budget_seconds`` the epochs (at most
    ``epochs`` when given) are planned to fit the budget and training stops when it is spent. ``resume`` continues
    the checkpoint in ``out`` to ``epochs`` in total.
    """
    from marketsynth import api

    cls = get_model_class(model)
    if cls.name not in candle_models():
        raise ModelError(f"{cls.name} does not generate candles, so it cannot run this pipeline; "
                         f"choose one of {', '.join(candle_models())}")
    stages, out = stages or Progress(), Path(out)
    began = time.perf_counter()
    config = {"seq_len": seq_len}
    planned = 1 if not cls.iterative else (epochs or cls.default_epochs)
    if budget_seconds is not None and cls.iterative and not resume:
        stages.start("train", None, f"{cls.name}: timing a few steps to plan the budget")
        planned = _epochs_for_budget(cls, config, bars, adjacent, budget_seconds, epochs or _EPOCH_CAP, seed, device)
    done_before = load_checkpoint(out).epoch if resume and is_checkpoint(out) else 0
    if resume and (done_before >= planned or (not cls.iterative and is_checkpoint(out))):
        stages.finish("train", f"{cls.name}: checkpoint already has {done_before} epoch(s)")
        checkpoint = load_checkpoint(out, device=device)
        return Trained(checkpoint, checkpoint.epoch, planned, 0.0)
    stages.start("train", planned - done_before if cls.iterative else 1, f"{cls.name} fitting")

    def on_epoch(epoch: int, row: dict[str, Any]) -> None:
        shown = [k for k, v in row.items() if k not in ("epoch", "seconds", "phase") and isinstance(v, float)]
        main = [k for k in ("g_loss", "d_loss", "e_loss", "s_loss") if k in shown] or shown
        losses = "  ".join(f"{k} {row[k]:.3g}" for k in main[:3])
        stages.advance("train", 1, f"{cls.name} epoch {epoch}/{planned}  {losses}")
        if budget_seconds is not None and epoch < planned and time.perf_counter() - began > budget_seconds:
            raise _BudgetSpent(epoch)

    def fit(to_epochs: int, continuing: bool) -> bool:
        """Train to ``to_epochs`` in total; True when the budget stopped it (the checkpoint of the epoch that
        spent it is written before the hook runs)."""
        try:
            api.train(cls.name, bars, interval=adjacent, config=config, epochs=to_epochs, seed=seed, device=device,
                      out=out, checkpoint_every=1 if budget_seconds is not None else 5, resume=continuing,
                      progress=False, on_epoch=on_epoch, data_source=source)
        except _BudgetSpent:
            return True
        return False

    fitting_began = time.perf_counter()
    stopped = fit(planned, resume and is_checkpoint(out))
    # The plan is an estimate from a few timed steps; when the planned epochs end with budget to spare (a slow
    # probe, a busy machine calming down), training continues to the budget, never past an explicit ``epochs``.
    cap = epochs or _EPOCH_CAP
    while budget_seconds is not None and cls.iterative and not stopped and planned < cap:
        done = load_checkpoint(out).epoch
        per_epoch = (time.perf_counter() - fitting_began) / max(done - done_before, 1)
        extra = int((budget_seconds * _BUDGET_SAFETY - (time.perf_counter() - began)) // per_epoch)
        if extra < 1:
            break
        planned = min(cap, done + extra)
        stages.start("train", planned - done, f"{cls.name}: budget left, continuing to epoch {planned}")
        stopped = fit(planned, True)
    seconds = time.perf_counter() - began
    checkpoint = load_checkpoint(out, device=device)
    trained = checkpoint.epoch if cls.iterative else 1
    how = f"{trained} epoch(s)" if cls.iterative else "one fit"
    stages.finish("train", f"{cls.name}: {how} in {seconds:.0f} s" + (" (budget spent)" if stopped else ""))
    return Trained(checkpoint, trained, planned, seconds, stopped)


def _epochs_for_budget(cls, config: dict, bars: pd.DataFrame, adjacent: str | None, budget: float, cap: int,
                       seed: int, device: str) -> int:
    """The most epochs (1..cap) whose estimated time fits the budget: one training step is timed at each of
    ``_PROBE_POINTS`` evenly spaced points of a ``cap``-epoch schedule on a throwaway model (phase fractions
    are the same for any total), averaged and scaled to the batches of an epoch."""
    import torch

    from marketsynth.models.data import TrainingData
    from marketsynth.training import resolve_device

    began = time.perf_counter()
    rep = cls.representation_for("log-returns").fit(bars)
    data = TrainingData(bars, timeframe=adjacent, representation=rep)
    probe = cls(cls.configure(config, data), device=resolve_device(device), seed=seed)
    arrays = probe.training_arrays(data)  # the same hooks api.train runs
    batch_size = probe.config.batch_size
    batch = torch.as_tensor(arrays.train[:batch_size], dtype=torch.float32, device=probe.device)
    conditions = None if arrays.conditions is None else torch.as_tensor(arrays.conditions[:batch_size])
    nominal = max(cap if cap < _EPOCH_CAP else 100, _PROBE_POINTS)
    points = [int((k + 0.5) * nominal / _PROBE_POINTS) for k in range(_PROBE_POINTS)]
    probe.train(True)
    probe.train_step(batch, conditions, epoch=points[0], total_epochs=nominal)  # warm-up: first calls are slow
    timings = []
    for point in points:
        tic = time.perf_counter()
        probe.train_step(batch, conditions, epoch=point, total_epochs=nominal)
        timings.append(time.perf_counter() - tic)
    per_epoch = float(np.mean(timings)) * max(1, math.ceil(len(arrays.train) / batch_size))
    left = budget * _BUDGET_SAFETY - (time.perf_counter() - began)
    return int(min(cap, max(1, left // per_epoch)))


# ---- generate, evaluate, report ----------------------------------------------------------------------------
def generate(checkpoint: Checkpoint, num_samples: int, *, seed: int = 0, output: str | Path | None = None,
             stages: Progress | None = None) -> pd.DataFrame:
    """``num_samples`` synthetic windows of the training length as a long candle frame (written to ``output``)."""
    from marketsynth import api

    stages = stages or Progress()
    stages.start("generate", 1, f"{num_samples} windows")
    frame = api.sample(checkpoint, num_samples, seed=seed, output=output)
    stages.finish("generate", f"{num_samples} windows of {checkpoint.model.config.seq_len} bars")
    return frame


def default_num_samples(test_windows: int) -> int:
    """As many synthetic windows as held-out real ones (the classifiers use equal numbers), 500 to 5,000."""
    return int(min(MAX_SAMPLES, max(500, test_windows)))


def evaluate_windows(real: np.ndarray, synthetic, *, train: np.ndarray | None, seq_len: int, seed: int = 0,
                     repeats: int = 3, discriminators=None, stages: Progress | None = None, label: str = "",
                     diagnose: bool | dict = False):
    """``evaluation.evaluate`` with its progress shown as the ``evaluate`` stage; ``diagnose`` as ``evaluate``
    takes it (True, or ``diagnosis.diagnose`` keyword arguments such as ``diagnosis.real_clock``'s)."""
    from marketsynth.evaluation import evaluate
    from marketsynth.evaluation.metrics import DEFAULT_DISCRIMINATORS

    stages = stages or Progress()
    with torch_threads(1):
        result = evaluate(real, synthetic, train_windows=train, seq_len=seq_len, repeats=repeats, seed=seed,
                          progress=stages, discriminators=discriminators or DEFAULT_DISCRIMINATORS,
                          diagnose=diagnose)
    counts = result.verdict_counts()
    stages.finish("evaluate", f"{label}{': ' if label else ''}{counts['good']} good, {counts['fair']} fair, "
                              f"{counts['poor']} poor")
    return result


def reference_scores(real: np.ndarray, train: np.ndarray, *, seed: int = 0, discriminators=None,
                     stages: Progress | None = None) -> dict[str, float]:
    """Discriminative scores of the real training-period windows against the held-out ones (one run each): what
    a model that reproduced its training period perfectly would score on this split, since markets change between
    the periods. Same features, scaling and classifier settings as ``evaluate``'s default protocol."""
    from marketsynth.evaluation.inputs import FEATURE_NAMES, FeatureScaler, subsample, window_features
    from marketsynth.evaluation.metrics import DEFAULT_DISCRIMINATORS, PROTOCOLS

    proto, rng = PROTOCOLS["default"], np.random.default_rng(seed)
    real_f, train_f = window_features(real), window_features(train)
    scale = FeatureScaler(np.concatenate([train_f, real_f]))
    held_out, trained_on = scale(subsample(real_f, MAX_SAMPLES, rng)), scale(subsample(train_f, MAX_SAMPLES, rng))
    scores, stages, specs = {}, stages or Progress(), list(discriminators or DEFAULT_DISCRIMINATORS)
    stages.start("reference", len(specs), "real training-period windows vs held-out")
    with torch_threads(1):
        for spec in specs:
            columns = None if spec.columns is None else [FEATURE_NAMES.index(c) for c in spec.columns]
            scores[f"discriminative score ({spec.name})"] = proto.discriminative_score(
                held_out, trained_on, hidden=spec.hidden, columns=columns, seed=seed)
            stages.advance("reference", 1)
    stages.finish("reference", "real training-period windows vs held-out: discriminative "
                               + ", ".join(f"{v:.3f}" for v in scores.values()))
    return scores
