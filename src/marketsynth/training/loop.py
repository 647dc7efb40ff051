"""The fit loop every neural model shares: batches, progress, history, checkpoints, exact resume, distribution.

Models implement ``train_step`` (one batch, their own optimisers); this loop does the rest:

* Batches come from a permutation drawn each epoch from a seeded ``torch.Generator``; the global torch RNG
  (noise, dropout) is seeded too, so the same seed gives identical history and weights on CPU.
* A checkpoint (``marketsynth.checkpoint``) is written at the start, every ``checkpoint_every`` epochs and at
  the end, atomically. It carries optimiser states, both RNG states, the epoch and the history, so resuming
  continues *exactly*: 2 epochs + resume to 4 gives the same weights as 4 epochs straight. ``epochs`` is the
  total to reach, so re-running an interrupted command with ``resume=True`` finishes the job.
* Warnings (``TrainingWarning``, one line each) when training goes wrong: the discriminator wins for several
  epochs, a loss explodes, or samples collapse (their spread across a fixed batch falls far below the data's).
  A non-finite loss stops training with a ModelError; the last checkpoint stays intact.
* Under ``torchrun`` (RANK/WORLD_SIZE set, process group joined by ``distributed_session``) each rank trains on
  its shard of every epoch's permutation (like ``DistributedSampler``) with the model's networks wrapped in
  DistributedDataParallel; only rank 0 shows progress and writes history and checkpoints. At the end the ranks
  compare weight fingerprints; the result is saved in the checkpoint's meta.json (``distributed``).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from marketsynth.checkpoint import HISTORY, is_checkpoint, restore_training_state, save_checkpoint, write_history
from marketsynth.errors import ModelError
from marketsynth.models.base import GenerativeModel, History

_WIN_EPOCHS = 3  # consecutive epochs the discriminator must win before a warning
_COLLAPSE_RATIO, _COLLAPSE_EPOCHS = 0.1, 2  # sample spread below 10% of the data's for 2 epochs
_EXPLODE_FACTOR, _EXPLODE_FLOOR = 20.0, 20.0  # |g_loss| above 20x its first value (and above 20)
_MONITOR_SAMPLES = 64


class TrainingWarning(UserWarning):
    """Training is going wrong in a way the user can act on."""


# ---- devices and processes ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DistributedInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def distributed_info() -> DistributedInfo:
    if dist.is_available() and dist.is_initialized():
        return DistributedInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistributedInfo()


@contextmanager
def distributed_session(device: str = "cpu"):
    """Join torchrun's process group when launched by it (NCCL on CUDA, gloo on CPU); a no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available() or dist.is_initialized():
        yield distributed_info()
        return
    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield distributed_info()
    finally:
        dist.destroy_process_group()


def resolve_device(requested: str | None = "cpu") -> torch.device:
    """``cpu``, ``cuda`` (``cuda:LOCAL_RANK`` under torchrun), ``cuda:N`` or ``auto``; ModelError if unavailable."""
    name = (requested or "cpu").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelError(f"--device {requested}: PyTorch {torch.__version__} sees no CUDA device "
                             f"(built with CUDA {torch.version.cuda or 'none'}); use --device cpu")
        if name == "cuda":
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ModelError(f"unknown device '{requested}'; use cpu, cuda, cuda:N or auto") from None
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ModelError(f"--device {requested}: only {torch.cuda.device_count()} CUDA device(s) exist")
        return device
    raise ModelError(f"unknown device '{requested}'; use cpu, cuda, cuda:N or auto")


# ---- the loop ----------------------------------------------------------------------------------------------
def train_loop(model: GenerativeModel, windows, conditions=None, *, epochs: int, out_dir: str | Path | None = None,
               checkpoint_every: int = 10, resume: bool = False, seed: int = 0, val_windows=None,
               progress: bool = True, history_path: str | Path | None = None, on_epoch=None,
               representation=None, meta: dict[str, Any] | None = None,
               training_settings: dict[str, Any] | None = None) -> History:
    """Train ``model`` on windows ``[N, seq_len, F]`` up to ``epochs`` in total; returns the full history.

    ``on_epoch(epoch, row)`` is called after each epoch (rank 0). ``representation``/``meta`` go into the
    checkpoint so it can be decoded and traced to its data.
    """
    if not model.iterative:
        raise ModelError(f"{model.name} is fitted in one pass, not epoch by epoch; call model.fit(windows)")
    if epochs < 1 or checkpoint_every < 1:
        raise ModelError(f"epochs and checkpoint_every must be at least 1, got {epochs} and {checkpoint_every}")
    windows = windows.features if hasattr(windows, "features") else windows
    windows, conditions = model.training_windows(windows, conditions)
    data = _as_windows(windows, model, "training windows", model.window_length)
    cond = None if conditions is None else torch.as_tensor(np.asarray(conditions), dtype=torch.float32)
    if cond is not None and len(cond) != len(data):
        raise ModelError(f"{len(cond)} conditions for {len(data)} windows; pass one per window")
    val = None if val_windows is None else _as_windows(val_windows, model, "validation windows", model.config.seq_len)
    info, out = distributed_info(), Path(out_dir) if out_dir is not None else None
    main = info.rank == 0
    if info.active and not model.supports_distributed:
        raise ModelError(f"{model.name} does not support distributed training yet; run it without torchrun")
    batches_per_epoch = _batches_per_epoch(len(data), model.config.batch_size, info)
    shuffle = torch.Generator().manual_seed(int(seed))
    history, monitor, start = History(), _Monitor(model, data, seed, epochs), 0
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
    try:
        with _progress(progress and main) as bar:
            task = bar.add_task(f"{model.name} epoch {start + 1}/{epochs}",
                                total=(epochs - start) * batches_per_epoch, losses="")
            for epoch in range(start, epochs):
                began = time.perf_counter()
                model.train(True)
                sums: dict[str, float] = {}
                counts: dict[str, int] = {}
                for index in _epoch_batches(len(data), model.config.batch_size, shuffle, info):
                    losses = model.train_step(data[index], None if cond is None else cond[index],
                                              epoch=epoch, total_epochs=epochs)
                    for key, value in losses.items():
                        sums[key] = sums.get(key, 0.0) + float(value)
                        counts[key] = counts.get(key, 0) + 1
                    steps += 1
                    bar.update(task, advance=1, losses=_format_losses(losses),
                               description=f"{model.name} epoch {epoch + 1}/{epochs}")
                row: dict[str, Any] = {"epoch": epoch + 1, **{k: sums[k] / counts[k] for k in sums}}
                if info.active:
                    row = _average_over_ranks(row)
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
                    extra = {"distributed": _sync_report(model, info, steps)} if last and info.active else None
                    save(epoch + 1, extra)
                if main and on_epoch is not None:  # after the checkpoint: a hook that stops the run loses nothing
                    on_epoch(epoch + 1, row)
    finally:
        model.undistribute()
        model.train(False)
    return history


# ---- batches -----------------------------------------------------------------------------------------------
def _epoch_batches(n: int, batch_size: int, shuffle: torch.Generator, info: DistributedInfo) -> list[torch.Tensor]:
    """This rank's batches of one epoch: a seeded permutation, padded by wrapping to a multiple of the world size
    and dealt round-robin (DistributedSampler's split). A last batch of one window is dropped (BatchNorm)."""
    order = torch.randperm(n, generator=shuffle)
    if info.active:
        per_rank = math.ceil(n / info.world_size)
        order = order.repeat(math.ceil(per_rank * info.world_size / n))[: per_rank * info.world_size]
        order = order[info.rank::info.world_size]
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches.pop()
    return batches


def _batches_per_epoch(n: int, batch_size: int, info: DistributedInfo) -> int:
    per_rank = math.ceil(n / info.world_size)
    if per_rank < 2:
        raise ModelError(f"{n} training window(s) are too few to train on {info.world_size} process(es); "
                         f"use more data or a shorter --seq-len")
    full, rest = divmod(per_rank, batch_size)
    return full + (1 if rest >= 2 or full == 0 else 0)


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


# ---- watching the run --------------------------------------------------------------------------------------
class _Monitor:
    """Warns once per kind of trouble; also adds ``diversity`` and ``val_w1`` columns to each history row."""

    def __init__(self, model: GenerativeModel, data: torch.Tensor, seed: int, epochs: int):
        self.model, self.seed, self.epochs = model, int(seed) + 1, epochs
        subset = data[torch.linspace(0, len(data) - 1, min(len(data), 1024)).long()].cpu().numpy()
        self.data_spread = float(subset.std(axis=0).mean())
        self.wins = self.collapsed = 0
        self.peak_diversity = 0.0
        self.g_first: float | None = None
        self.warned: list[str] = []

    def state(self) -> dict[str, Any]:
        return {"wins": self.wins, "collapsed": self.collapsed, "peak_diversity": self.peak_diversity,
                "g_first": self.g_first, "warned": self.warned}

    def load_state(self, state: dict[str, Any]) -> None:
        self.wins, self.collapsed = int(state.get("wins", 0)), int(state.get("collapsed", 0))
        self.peak_diversity = float(state.get("peak_diversity", 0.0))
        self.g_first, self.warned = state.get("g_first"), list(state.get("warned", []))

    def check(self, row: dict[str, Any], val: torch.Tensor | None) -> dict[str, float]:
        extra: dict[str, float] = {}
        epoch = row["epoch"]
        self.wins = self.wins + 1 if self.model.discriminator_wins(row) else 0
        if self.wins >= _WIN_EPOCHS:
            self._warn("wins", f"epoch {epoch}: the discriminator has separated real from fake for {self.wins} "
                               "epochs, so the generator learns nothing; try a lower --disc-lr, a higher --gen-lr "
                               "or a smaller discriminator")
        key = self.model.watch_loss
        if key in row:
            value = abs(float(row[key]))
            self.g_first = value if self.g_first is None else self.g_first
            if value > max(_EXPLODE_FLOOR, _EXPLODE_FACTOR * self.g_first):
                self._warn("explode", f"epoch {epoch}: {key} has exploded to {row[key]:.4g} (first epoch "
                                      f"{self.g_first:.4g}); training is diverging: try lower learning rates "
                                      "(--gen-lr/--disc-lr) or a larger --batch-size")
        if "g_loss" in row:  # the generator is trained adversarially this epoch (not a pre-training phase)
            samples = self.model.sample(_MONITOR_SAMPLES, seed=self.seed)
            ratio = float(np.std(samples, axis=0).mean()) / max(self.data_spread, 1e-12)
            extra["diversity"] = round(ratio, 6)
            self.collapsed = self.collapsed + 1 if ratio < _COLLAPSE_RATIO else 0
            self.peak_diversity = max(self.peak_diversity, ratio)
            # A fresh generator often starts with little spread and grows it; warn when the spread fell from a
            # healthy level (collapse) or never grew by half-way through the run
            fell = self.peak_diversity >= 3 * _COLLAPSE_RATIO
            if self.collapsed >= _COLLAPSE_EPOCHS and (fell or epoch >= max(5, self.epochs // 2)):
                other = "" if self.model.name == "wgan-gp" else ", or the wgan-gp model"
                self._warn("collapse", f"epoch {epoch}: samples have collapsed: their spread is {ratio:.1%} of "
                                       "the data's (mode collapse, or a generator that never learnt the spread); "
                                       f"try a lower --gen-lr, more epochs or data, another --seed{other}")
        if val is not None:
            extra.update(self.model.validation_losses(val))  # e.g. glow's held-out NLL next to its baseline's
            samples = self.model.sample(min(len(val), 256), seed=self.seed)
            extra["val_w1"] = round(marginal_w1(samples, val.cpu().numpy()), 6)
        self.model.train(True)
        return extra

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self.warned:
            self.warned.append(kind)
            warnings.warn(message, TrainingWarning, stacklevel=4)


def marginal_w1(a: np.ndarray, b: np.ndarray, quantiles: int = 200) -> float:
    """Mean over features of the 1-D Wasserstein-1 distance between the values of ``a`` and ``b`` ``[..., F]``."""
    q = (np.arange(quantiles) + 0.5) / quantiles
    a2, b2 = np.asarray(a, np.float64).reshape(-1, a.shape[-1]), np.asarray(b, np.float64).reshape(-1, b.shape[-1])
    return float(np.mean(np.abs(np.quantile(a2, q, axis=0) - np.quantile(b2, q, axis=0))))


def _stop_if_not_finite(row: dict[str, Any], out: Path | None, saved_epoch: int) -> None:
    bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        kept = f"; the checkpoint in {out} (epoch {saved_epoch}) is intact" if out is not None else ""
        raise ModelError(f"training diverged at epoch {row['epoch']}: {', '.join(bad)} became {row[bad[0]]}; "
                         f"lower --gen-lr/--disc-lr or check the data{kept}")


def _format_losses(losses: dict[str, float]) -> str:
    return "  ".join(f"{k} {float(v):.4g}" for k, v in losses.items() if k != "phase")


class _NoProgress:
    def add_task(self, *args, **kwargs) -> int:
        return 0

    def update(self, *args, **kwargs) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def _progress(enabled: bool):
    if not enabled or os.environ.get("MARKETSYNTH_NO_PROGRESS"):
        return _NoProgress()
    from rich.progress import TextColumn

    from marketsynth.cli.common import progress_bar

    return progress_bar(TextColumn("{task.fields[losses]}"))


# ---- distribution and RNG ----------------------------------------------------------------------------------
def _average_over_ranks(row: dict[str, Any]) -> dict[str, Any]:
    keys = sorted(k for k, v in row.items() if k != "epoch" and isinstance(v, float))
    values = torch.tensor([row[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return {**row, **{k: float(v) / dist.get_world_size() for k, v in zip(keys, values.tolist(), strict=True)}}


def _sync_report(model: GenerativeModel, info: DistributedInfo, steps: int) -> dict[str, Any]:
    """Give every rank rank 0's buffers (BatchNorm statistics) and check all ranks hold the same weights."""
    for module in model.modules().values():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_tensors().items()):
        digest.update(key.encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    reports: list[Any] = [None] * info.world_size
    dist.all_gather_object(reports, {"rank": info.rank, "steps": steps, "digest": digest.hexdigest()})
    in_sync = len({r["digest"] for r in reports}) == 1
    if not in_sync and info.rank == 0:
        warnings.warn("the ranks ended with different weights; the checkpoint holds rank 0's", TrainingWarning,
                      stacklevel=3)
    return {"world_size": info.world_size, "backend": dist.get_backend(), "weights_in_sync": in_sync,
            "steps_per_rank": [r["steps"] for r in sorted(reports, key=lambda r: r["rank"])],
            "weight_digests": [r["digest"] for r in sorted(reports, key=lambda r: r["rank"])]}


def _restore_rng(rng: dict[str, torch.Tensor], shuffle: torch.Generator, device: torch.device) -> None:
    try:
        torch.set_rng_state(rng["torch"].to(torch.uint8))
        shuffle.set_state(rng["shuffle"].to(torch.uint8))
        if device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"].to(torch.uint8), device)
    except (KeyError, RuntimeError) as exc:
        raise ModelError(f"the checkpoint's RNG state is missing or corrupt ({exc}); train into a new --out") from exc
