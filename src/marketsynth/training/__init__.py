"""Training: one fit for every model (``fit.fit_model``), the shared epoch loop of neural models (``loop``),
devices and torchrun (``distributed``), and the warnings and extra history columns of a run (``monitor``)."""

from marketsynth.training.distributed import (
    DistributedInfo,
    distributed_info,
    distributed_session,
    resolve_device,
)
from marketsynth.training.fit import fit_model
from marketsynth.training.loop import train_loop
from marketsynth.training.monitor import TrainingWarning, marginal_w1

__all__ = ["DistributedInfo", "TrainingWarning", "distributed_info", "distributed_session", "fit_model",
           "marginal_w1", "resolve_device", "train_loop"]
