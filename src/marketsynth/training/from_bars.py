"""Fit a registered generative model on a bars frame in memory, without a checkpoint directory.

The same path ``api.train`` takes (``models.base``: the model's representation fitted on the bars, ``configure``
from the data, ``training_arrays`` from the gap-free segments, then ``fit_model``), for library code below the
facades that trains models as a step of a larger job (``trading.experiments``: a generator per walk-forward fold).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from marketsynth.models.base import GenerativeModel, History
from marketsynth.models.data import TrainingArrays, TrainingData
from marketsynth.models.registry import get_model_class
from marketsynth.progress import Progress
from marketsynth.training.distributed import resolve_device
from marketsynth.training.fit import fit_model


@dataclass
class FittedModel:
    """A model fitted by ``fit_on_bars``: the model, its fitted representation (None for bar-feature models), the
    history and what it trained on (``items``, e.g. ``"1976 windows of 24 bars"``)."""

    model: GenerativeModel
    representation: Any
    history: History
    items: str


@dataclass
class Prepared:
    """A model ready to fit: the model, its fitted representation and its training arrays."""

    model: GenerativeModel
    representation: Any
    arrays: TrainingArrays


def prepare(name: str, bars: pd.DataFrame, *, timeframe: str | None = None, config: dict[str, Any] | None = None,
            representation: str = "log-returns", val_fraction: float = 0.0, label_column: str | None = None,
            bar_labels=None, seed: int = 0, device=None, resumed: tuple[GenerativeModel, Any] | None = None
            ) -> Prepared:
    """The one way a model meets its data (``models.base``'s hooks): the model's representation fitted on the bars,
    ``configure`` from the data, the model built, then ``training_arrays`` from the gap-free segments. ``resumed``:
    the (model, representation) of a checkpoint being continued, used as they are."""
    cls = get_model_class(name)
    if resumed is not None:
        model, rep = resumed
    else:
        rep = cls.representation_for(representation)
        rep = rep.fit(bars) if rep is not None else None
    data = TrainingData(bars, timeframe=timeframe, representation=rep, val_fraction=val_fraction,
                        label_column=label_column, bar_labels=bar_labels)
    if resumed is None:
        device = device if isinstance(device, torch.device) else resolve_device(device or "cpu")
        model = cls(cls.configure(dict(config or {}), data), device=device, seed=seed)
    return Prepared(model, rep, model.training_arrays(data))


def fit_on_bars(name: str, bars: pd.DataFrame, *, timeframe: str | None = None, config: dict[str, Any] | None = None,
                epochs: int | None = None, seed: int = 0, device: str = "cpu", representation: str = "log-returns",
                progress: Progress | None = None) -> FittedModel:
    """Fit the registered model ``name`` on ``bars`` (a bars frame; ``timeframe`` decides which bars are neighbours)
    with ``config`` settings (the model's defaults otherwise) for ``epochs`` (its ``default_epochs`` when None).
    Conditional models get automatic regime labels. Nothing is written to disk."""
    cls = get_model_class(name)
    epochs = cls.default_epochs if epochs is None else int(epochs)
    ready = prepare(name, bars, timeframe=timeframe, config=config, representation=representation, seed=seed,
                    device=device)
    history = fit_model(ready.model, ready.arrays, epochs=epochs, seed=seed, progress=progress)
    ready.model.train(False)
    return FittedModel(ready.model, ready.representation, history, ready.arrays.describe())
