"""The interface every generative model implements.

A model works in the representation's *model space*: float arrays ``[n, seq_len, n_features]`` produced by
``marketsynth.representation`` (scaled per feature). It never sees prices; decoding to candles is the
representation's job, so every model yields valid candles in price units.

Neural models implement ``train_step`` and let the shared loop in ``marketsynth.training`` drive epochs,
progress, history, checkpoints and resume; they own their optimisers and step them explicitly. Classical models
(``iterative = False``, e.g. GARCH) override ``fit`` instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
import torch

from marketsynth.errors import ModelError


@dataclass
class ModelConfig:
    """Settings shared by all models; subclasses add their own fields with defaults that work on 1h crypto."""

    seq_len: int = 24
    n_features: int = 5
    latent_dim: int = 100
    batch_size: int = 64
    gen_lr: float = 2e-4
    disc_lr: float = 2e-4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ModelError(
                f"unknown setting(s) {', '.join(unknown)} for this model; known: {', '.join(sorted(known))}"
            )
        return cls(**values)


@dataclass
class History:
    """One dict of mean losses per epoch (keys like ``d_loss``, ``g_loss``; TimeGAN adds ``phase``)."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(dict(row))

    def column(self, key: str) -> list:
        return [row[key] for row in self.rows if key in row]


class GenerativeModel(ABC):
    """fit / sample / save / load. Subclasses set ``name`` and ``Config`` and build their networks in __init__."""

    name: ClassVar[str]
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    scaling: ClassVar[str] = "standard"  # how the representation scales features for this model ("minmax" for tanh)
    iterative: ClassVar[bool] = True  # False: ``fit`` is one closed-form/likelihood fit (no epochs)
    has_latent: ClassVar[bool] = True  # False: no latent space to interpolate in
    native_long_paths: ClassVar[bool] = False  # True: ``sample(length=...)`` continues one state; False: chained
    requires_representation: ClassVar[str | None] = None  # e.g. "log-returns" when the model reads column meanings
    supports_distributed: ClassVar[bool] = False  # True: train_step runs its forwards through ``net(name)`` (DDP)
    ddp_exclude: ClassVar[tuple[str, ...]] = ()  # modules not wrapped in DDP; train_step calls average_gradients
    watch_loss: ClassVar[str] = "g_loss"  # the loss whose explosion the training loop warns about
    conditional: ClassVar[bool] = False  # True: trained on one label per window, sampled per label (cgan regimes)

    def __init__(self, config: ModelConfig | dict | None = None, *, device: str | torch.device = "cpu", seed: int = 0):
        if isinstance(config, dict):
            config = self.Config.from_dict(config)
        self.config = config or self.Config()
        self.device = torch.device(device)
        self.seed = seed
        torch.manual_seed(seed)  # weight initialisation is part of the run's reproducibility
        self._wrapped: dict[str, torch.nn.Module] = {}  # DDP wrappers while training under torchrun

    # ---- training ----------------------------------------------------------------------------------------------
    def train_step(
        self, batch: torch.Tensor, conditions: torch.Tensor | None, *, epoch: int, total_epochs: int
    ) -> dict[str, float]:
        """One optimisation step on a batch ``[b, seq_len, n_features]``; returns the losses to show and log."""
        raise ModelError(f"{self.name} is not trained step by step")

    def fit(
        self, windows: np.ndarray, conditions: np.ndarray | None = None, *, epochs: int = 1, **loop_options
    ) -> History:
        """Train on windows; neural models run the shared loop (progress, history, checkpoints, resume)."""
        from marketsynth.training import train_loop

        return train_loop(self, windows, conditions, epochs=epochs, **loop_options)

    @property
    def window_length(self) -> int:
        """Steps per training window after ``training_windows`` (``seq_len`` unless the model trains on longer
        sequences)."""
        return self.config.seq_len

    def training_windows(self, windows: np.ndarray, conditions: np.ndarray | None = None):
        """``(arrays, conditions)`` the training loop batches, made from the ``[N, seq_len, F]`` windows and the
        per-window conditions it was given (identity by default; the autoregressive model trains on longer
        sequences of the same bars, with the position in the daily cycle of each)."""
        return windows, conditions

    def modules(self) -> dict[str, torch.nn.Module]:
        """The networks, by name (weights are saved under ``<name>.<param>``)."""
        return {}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers, by name (their state is saved for exact resume)."""
        return {}

    def discriminator_wins(self, row: dict[str, Any]) -> bool:
        """Whether an epoch's mean losses say the discriminator separates real from fake perfectly, so the
        generator gets no signal (the loop warns after a few such epochs). Default: ``d_loss`` near 0."""
        value = row.get("d_loss")
        return isinstance(value, float | int) and abs(value) < 0.05

    def validation_losses(self, val: torch.Tensor) -> dict[str, float]:
        """Extra history columns computed on the validation windows each epoch (the loop adds ``val_w1``
        itself). Default none; exact-likelihood models (glow) report their held-out NLL here."""
        return {}

    # ---- distributed training (the loop calls distribute/undistribute under torchrun) --------------------------
    def net(self, name: str) -> torch.nn.Module:
        """The module to run training forwards through: its DDP wrapper under torchrun, else the module itself."""
        wrapped = getattr(self, "_wrapped", {}).get(name)
        return wrapped if wrapped is not None else self.modules()[name]

    def distribute(self, wrap) -> None:
        """Wrap every module except ``ddp_exclude`` with ``wrap`` (DDP); excluded modules start from rank 0's
        weights and their gradients are averaged by ``average_gradients``."""
        import torch.distributed as dist

        self._wrapped = {}
        for name, module in self.modules().items():
            if name in self.ddp_exclude:
                for tensor in module.state_dict().values():
                    dist.broadcast(tensor, src=0)
            else:
                self._wrapped[name] = wrap(module)

    def undistribute(self) -> None:
        self._wrapped = {}

    def average_gradients(self, params) -> None:
        """Average the gradients of a module (or an iterable of parameters) over the ranks with an explicit
        all_reduce; a no-op in one process."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        world = dist.get_world_size()
        for param in params.parameters() if isinstance(params, torch.nn.Module) else params:
            if param.grad is not None:
                dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
                param.grad.div_(world)

    @staticmethod
    def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
        """``value`` averaged over the ranks, so data-dependent decisions agree on every rank."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return value
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value / dist.get_world_size()

    # ---- generation --------------------------------------------------------------------------------------------
    @abstractmethod
    def sample(
        self,
        n: int,
        conditions: np.ndarray | None = None,
        *,
        seed: int = 0,
        length: int | None = None,
        temperature: float = 1.0,
    ) -> np.ndarray:
        """``n`` windows ``[n, length or seq_len, n_features]`` in model space; same seed → same numbers."""

    def sample_latent(self, n: int, *, seed: int = 0) -> torch.Tensor:
        """Latent codes for ``generate_from_latent`` (used for latent-space interpolation)."""
        raise ModelError(f"{self.name} has no latent space to interpolate in; drop --interpolate")

    def generate_from_latent(self, z: torch.Tensor, conditions: np.ndarray | None = None) -> np.ndarray:
        raise ModelError(f"{self.name} has no latent space to interpolate in; drop --interpolate")

    # ---- persistence (weights only; the checkpoint module writes files) ----------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Every weight as a flat name → tensor dict (safetensors-ready, CPU, contiguous)."""
        return {
            f"{name}.{key}": value.detach().cpu().contiguous()
            for name, module in self.modules().items()
            for key, value in module.state_dict().items()
        }

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, module in self.modules().items():
            prefix = f"{name}."
            own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                module.load_state_dict(own, strict=True)
            except RuntimeError as exc:
                raise ModelError(
                    f"checkpoint weights do not fit {self.name}.{name}: {str(exc).splitlines()[0]}"
                ) from exc

    def extra_state(self) -> dict[str, Any]:
        """JSON-serialisable state beyond tensors (fitted parameters of classical models, phase counters...)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - most models have none
        """Restore what ``extra_state`` returned."""

    def train(self, mode: bool = True) -> None:
        for module in self.modules().values():
            module.train(mode)

    def noise_generator(self, seed: int) -> torch.Generator:
        """A CPU generator: noise is drawn on the CPU then moved, so a seed gives the same draws on any device."""
        return torch.Generator(device="cpu").manual_seed(int(seed))
