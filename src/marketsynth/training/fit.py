"""The one fit every model goes through: the shared loop for iterative models, ``fit_once`` for the others; a
checkpoint either way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marketsynth.checkpoint import save_checkpoint
from marketsynth.errors import ModelError
from marketsynth.models.base import GenerativeModel, History
from marketsynth.models.data import TrainingArrays
from marketsynth.progress import SILENT, Progress
from marketsynth.training.distributed import distributed_info
from marketsynth.training.loop import STAGE, train_loop


def fit_model(model: GenerativeModel, arrays: TrainingArrays, *, epochs: int, out: str | Path | None = None,
              resume: bool = False, seed: int = 0, checkpoint_every: int = 10, progress: Progress | None = None,
              on_epoch=None, representation=None, meta: dict[str, Any] | None = None,
              settings: dict[str, Any] | None = None) -> History:
    """Fit ``model`` on ``arrays`` (its ``training_arrays``) and checkpoint it to ``out`` (when given).

    Iterative models run ``train_loop`` to ``epochs`` in total (``resume`` continues the checkpoint in ``out``
    exactly); one-pass models run ``fit_once`` and are saved as one epoch. ``meta`` and ``representation`` go
    into the checkpoint so it can be decoded and traced to its data; ``progress`` receives the ``train`` stage.
    """
    if model.iterative:
        return train_loop(model, arrays.train, arrays.conditions, epochs=epochs, out_dir=out,
                          checkpoint_every=checkpoint_every, resume=resume, seed=seed, val_windows=arrays.val,
                          progress=progress, on_epoch=on_epoch, representation=representation, meta=meta,
                          training_settings=settings)
    if resume:
        raise ModelError(f"{model.name} is fitted in one pass and cannot be resumed; drop --resume")
    if distributed_info().active:
        raise ModelError(f"{model.name} is fitted in one pass; run it without torchrun")
    shown = progress if isinstance(progress, Progress) else SILENT
    shown.start(STAGE, 1, f"{model.name}: fitting {arrays.describe()}")
    history = model.fit_once(arrays)
    if out is not None:
        save_checkpoint(out, model, representation=representation, training=settings,
                        meta={**(meta or {}), "seed": int(seed)}, history=history, epoch=1)
    shown.finish(STAGE, f"{model.name}: one fit")
    return history
