"""The fit loop every neural model shares: batches, progress, history, checkpoints, exact resume, distribution.

Models implement ``train_step`` (one batch, their own optimisers); this loop does the rest:

* Batches come from a permutation drawn each epoch from a seeded ``torch.Generator``; the global torch RNG
  (noise, dropout) is seeded too, so the same seed gives identical history and weights on CPU.
* A checkpoint (``marketsynth.checkpoint``) is written at the start, every ``checkpoint_every`` epochs and at
  the end, atomically. It carries optimiser states, both RNG states, the epoch and the history, so resuming
  continues *exactly*: 2 epochs + resume to 4 gives the same weights as 4 epochs straight. ``epochs`` is the
  total to reach, so re-running an interrupted command with ``resume=True`` finishes the job.
* Progress is the ``train`` stage of a ``marketsynth.progress.Progress`` (one step per batch, the current
  losses as its note); the CLI passes one that draws it, library callers get silence.
* Warnings and the ``diversity``/``val_w1`` columns come from ``training.monitor``; a non-finite loss stops
  training with a ModelError and the last checkpoint stays intact.
* Under ``torchrun`` the ranks train on shards of every epoch (``training.distributed``); only rank 0 shows
  progress and writes history and checkpoints.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from marketsynth.checkpoint import HISTORY, is_checkpoint, restore_training_state, save_checkpoint, write_history
from marketsynth.errors import ModelError
from marketsynth.models.base import GenerativeModel, History
from marketsynth.progress import SILENT, Progress
from marketsynth.training.distributed import (
    average_over_ranks,
    batches_per_epoch,
    distributed_info,
    epoch_batches,
    sync_report,
)
from marketsynth.training.monitor import Monitor, TrainingWarning

STAGE = "train"  # the progress stage the loop reports


def train_loop(model: GenerativeModel, windows, conditions=None, *, epochs: int, out_dir: str | Path | None = None,
               checkpoint_every: int = 10, resume: bool = False, seed: int = 0, val_windows=None,
               progress: Progress | None = None, history_path: str | Path | None = None, on_epoch=None,
               representation=None, meta: dict[str, Any] | None = None,
               training_settings: dict[str, Any] | None = None) -> History:
    """Train ``model`` on windows ``[N, seq_len, F]`` up to ``epochs`` in total; returns the full history.

    ``on_epoch(epoch, row)`` is called after each epoch (rank 0). ``representation``/``meta`` go into the
    checkpoint so it can be decoded and traced to its data. ``progress`` receives the ``train`` stage.
    """
    if not model.iterative:
        raise ModelError(f"{model.name} is fitted in one pass, not epoch by epoch; use training.fit_model")
    if epochs < 1 or checkpoint_every < 1:
        raise ModelError(f"epochs and checkpoint_every must be at least 1, got {epochs} and {checkpoint_every}")
    data = _as_windows(windows, model, "training windows", model.window_length)
    cond = None if conditions is None else torch.as_tensor(np.asarray(conditions), dtype=torch.float32)
    if cond is not None and len(cond) != len(data):
        raise ModelError(f"{len(cond)} conditions for {len(data)} windows; pass one per window")
    val = None if val_windows is None else _as_windows(val_windows, model, "validation windows", model.config.seq_len)
    info, out = distributed_info(), Path(out_dir) if out_dir is not None else None
    main = info.rank == 0
    if info.active and not model.supports_distributed:
        raise ModelError(f"{model.name} does not support distributed training yet; run it without torchrun")
    per_epoch = batches_per_epoch(len(data), model.config.batch_size, info)
    shuffle = torch.Generator().manual_seed(int(seed))
    history, monitor, start = History(), Monitor(model, data, seed, epochs), 0
    if resume:
        if out is None or not is_checkpoint(out):
            raise ModelError(f"no checkpoint in {out} to resume; train without --resume first")
        state = restore_training_state(out, model)
        start = state["epoch"]
        for row in state.get("history", []):
            history.append(row)
        _restore_rng(state["rng"], shuffle, model.device)
        monitor.load_state(state.get("monitor", {}))
    else:
        torch.manual_seed(int(seed))
    if info.active:  # each rank draws its own noise; re-derived on resume, so a resumed run is reproducible too
        torch.manual_seed(int(seed) + 1_000_003 * info.rank + 7_919 * start)
    if start >= epochs:
        if main:
            warnings.warn(f"{out} already holds {start} epochs (asked for {epochs}); nothing to do: pass a larger "
                          f"--epochs to train further", TrainingWarning, stacklevel=2)
        return history

    saved = [start]  # the epoch of the last checkpoint written

    def save(epoch: int, extra_meta: dict[str, Any] | None = None) -> None:
        if out is None or not main:
            return
        settings = {"epochs": epochs, "batch_size": model.config.batch_size, "seed": int(seed),
                    "checkpoint_every": checkpoint_every, "device": str(model.device), **(training_settings or {})}
        rng = {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()}
        if model.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(model.device)
        save_checkpoint(out, model, representation=representation, training=settings, history=history,
                        meta={**(meta or {}), "seed": int(seed), "epochs_trained": epoch, **(extra_meta or {})},
                        training_state={"rng": rng, "monitor": monitor.state(), "total_epochs": epochs},
                        epoch=epoch)
        saved[0] = epoch

    if not resume:
        save(0)
    if info.active:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [model.device.index] if model.device.type == "cuda" else None
        model.distribute(lambda module: DistributedDataParallel(module, device_ids=device_ids))
    steps = 0
    shown = progress if main and isinstance(progress, Progress) else SILENT
    shown.start(STAGE, (epochs - start) * per_epoch, f"{model.name} epoch {start + 1}/{epochs}")
    try:
        for epoch in range(start, epochs):
            began = time.perf_counter()
            model.train(True)
            sums: dict[str, float] = {}
            counts: dict[str, int] = {}
            for index in epoch_batches(len(data), model.config.batch_size, shuffle, info):
                losses = model.train_step(data[index], None if cond is None else cond[index],
                                          epoch=epoch, total_epochs=epochs)
                for key, value in losses.items():
                    sums[key] = sums.get(key, 0.0) + float(value)
                    counts[key] = counts.get(key, 0) + 1
                steps += 1
                shown.advance(STAGE, 1, f"{model.name} epoch {epoch + 1}/{epochs}  {_format_losses(losses)}")
            row: dict[str, Any] = {"epoch": epoch + 1, **{k: sums[k] / counts[k] for k in sums}}
            if info.active:
                row = average_over_ranks(row)
            _stop_if_not_finite(row, out, saved[0])
            if main:
                row.update(monitor.check(row, val))
            row["seconds"] = round(time.perf_counter() - began, 3)
            history.append(row)
            if main:
                for path in filter(None, (history_path, out / HISTORY if out is not None else None)):
                    write_history(history, path)
            last = epoch + 1 == epochs
            if last or (epoch + 1) % checkpoint_every == 0:
                extra = {"distributed": sync_report(model, info, steps)} if last and info.active else None
                save(epoch + 1, extra)
            if main and on_epoch is not None:  # after the checkpoint: a hook that stops the run loses nothing
                on_epoch(epoch + 1, row)
        final = {k: v for k, v in history.rows[-1].items() if k not in ("epoch", "seconds")} if history.rows else {}
        shown.finish(STAGE, f"{model.name}: {epochs} epoch(s)  {_format_losses(final)}")
    finally:
        model.undistribute()
        model.train(False)
    return history


def _as_windows(windows, model: GenerativeModel, what: str, length: int) -> torch.Tensor:
    array = windows.features if hasattr(windows, "features") else windows
    tensor = torch.as_tensor(np.asarray(array), dtype=torch.float32)
    cfg = model.config
    if tensor.ndim != 3 or tuple(tensor.shape[1:]) != (length, cfg.n_features):
        raise ModelError(f"{what} must be [N, {length}, {cfg.n_features}] for this {model.name}, "
                         f"got {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ModelError(f"{what} contain NaN or inf; clean the data before training")
    return tensor.to(model.device)


def _stop_if_not_finite(row: dict[str, Any], out: Path | None, saved_epoch: int) -> None:
    bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        kept = f"; the checkpoint in {out} (epoch {saved_epoch}) is intact" if out is not None else ""
        raise ModelError(f"training diverged at epoch {row['epoch']}: {', '.join(bad)} became {row[bad[0]]}; "
                         f"lower --gen-lr/--disc-lr or check the data{kept}")


def _format_losses(losses: dict[str, float]) -> str:
    return "  ".join(f"{k} {float(v):.4g}" for k, v in losses.items() if k != "phase")


def _restore_rng(rng: dict[str, torch.Tensor], shuffle: torch.Generator, device: torch.device) -> None:
    try:
        torch.set_rng_state(rng["torch"].to(torch.uint8))
        shuffle.set_state(rng["shuffle"].to(torch.uint8))
        if device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"].to(torch.uint8), device)
    except (KeyError, RuntimeError) as exc:
        raise ModelError(f"the checkpoint's RNG state is missing or corrupt ({exc}); train into a new --out") from exc
