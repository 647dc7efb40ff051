"""Devices and processes: which device to train on, torchrun's process group, each rank's batches, and the
checks that every rank ends with the same weights.

Under ``torchrun`` (RANK/WORLD_SIZE set, process group joined by ``distributed_session``) each rank trains on its
shard of every epoch's permutation (like ``DistributedSampler``) with the model's networks wrapped in
DistributedDataParallel; only rank 0 shows progress and writes history and checkpoints. At the end the ranks
compare weight fingerprints (``sync_report``); the result is saved in the checkpoint's meta.json.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from marketsynth.errors import ModelError
from marketsynth.models.base import GenerativeModel
from marketsynth.training.monitor import TrainingWarning


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


# ---- batches -----------------------------------------------------------------------------------------------
def epoch_batches(n: int, batch_size: int, shuffle: torch.Generator, info: DistributedInfo) -> list[torch.Tensor]:
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


def batches_per_epoch(n: int, batch_size: int, info: DistributedInfo) -> int:
    per_rank = math.ceil(n / info.world_size)
    if per_rank < 2:
        raise ModelError(f"{n} training window(s) are too few to train on {info.world_size} process(es); "
                         f"use more data or a shorter --seq-len")
    full, rest = divmod(per_rank, batch_size)
    return full + (1 if rest >= 2 or full == 0 else 0)


# ---- agreeing across ranks ---------------------------------------------------------------------------------
def average_over_ranks(row: dict[str, Any]) -> dict[str, Any]:
    """An epoch's mean losses averaged over the ranks (the float entries other than ``epoch``)."""
    keys = sorted(k for k, v in row.items() if k != "epoch" and isinstance(v, float))
    values = torch.tensor([row[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return {**row, **{k: float(v) / dist.get_world_size() for k, v in zip(keys, values.tolist(), strict=True)}}


def sync_report(model: GenerativeModel, info: DistributedInfo, steps: int) -> dict[str, Any]:
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
