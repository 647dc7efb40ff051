"""The interface every generative model implements.

A model works in the representation's *model space*: float arrays ``[n, seq_len, n_features]`` produced by
``marketsynth.representation`` (scaled per feature). It never sees prices; decoding to candles is the
representation's job, so every model yields valid candles in price units.

One training path for every model (after PyTorch Lightning's hooks), driven by ``api.train``:

1. ``representation_for(requested)`` (class): the candle encoding the model reads, or None for models of
   per-bar features (glow); refuses encodings it cannot use (garch needs log returns).
2. ``configure(config, data)`` (class): settings derived from the data (``n_features`` from the representation,
   the daily cycle of intraday bars, the regime list of user labels).
3. ``training_arrays(data)``: the arrays the fit reads (``models.data.TrainingArrays``), made from the gap-free
   bar segments of ``models.data.TrainingData``; the default cuts windows of ``seq_len`` bars.
4. the fit (``marketsynth.training.fit_model``): neural models (``iterative``) implement ``train_step`` and let
   the shared loop drive epochs, progress, history, checkpoints and resume (they own their optimisers and step
   them explicitly); one-pass models (GARCH) implement ``fit_once``.

``sample`` validates its arguments once (counts, lengths, conditions, temperature) and calls the model's
``_sample``. Capabilities beyond that (conditions, exact likelihood, a sampling temperature) are the mixins in
``models.capabilities``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
import torch

from marketsynth.errors import ModelError
from marketsynth.models.capabilities import Conditional, Temperature
from marketsynth.models.data import TrainingArrays, TrainingData
from marketsynth.representation import Representation, make_representation
from marketsynth.timeframes import bars_per_day, position_in_day


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
    """fit / sample / save / load. Subclasses set ``name``, ``default_epochs`` and ``Config`` and build their
    networks in __init__."""

    name: ClassVar[str]
    default_epochs: ClassVar[int] = 20  # epochs of a run when none are asked for (1 for one-pass models)
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    scaling: ClassVar[str] = "standard"  # how the representation scales features for this model ("minmax" for tanh)
    iterative: ClassVar[bool] = True  # False: ``fit_once`` is one closed-form/likelihood fit (no epochs)
    models_candles: ClassVar[bool] = True  # False: it models per-bar feature vectors that do not decode to candles
    has_latent: ClassVar[bool] = True  # False: no latent space to interpolate in
    native_long_paths: ClassVar[bool] = False  # True: ``sample(length=...)`` continues one state; False: chained
    supports_distributed: ClassVar[bool] = False  # True: train_step runs its forwards through ``net(name)`` (DDP)
    ddp_exclude: ClassVar[tuple[str, ...]] = ()  # modules not wrapped in DDP; train_step calls average_gradients
    # True: the model reads each bar's time of day (``day_clock``) when its config's ``season`` (bars per day,
    # set by ``configure`` for intraday bars) is non-zero; its training items come with their first bar's position
    # in the day as conditions, and ``sample`` takes start positions (drawn uniformly when not given)
    daily_cycle: ClassVar[bool] = False
    watch_loss: ClassVar[str] = "g_loss"  # the loss whose explosion the training loop warns about
    collapse_hint: ClassVar[str] = ", or the wgan-gp model"  # added to the loop's mode-collapse warning
    # what a model without a sampling temperature offers instead, after "<name> has no sampling temperature; "
    temperature_instead: ClassVar[str] = (
        "scaling its noise does not widen its output in a defined way, so it is no stress; drop --temperature, or "
        "stress a model whose temperature widens the distribution (autoregressive, garch, glow)")

    def __init__(self, config: ModelConfig | dict | None = None, *, device: str | torch.device = "cpu", seed: int = 0):
        if isinstance(config, dict):
            config = self.Config.from_dict(config)
        self.config = config or self.Config()
        self.device = torch.device(device)
        self.seed = seed
        torch.manual_seed(seed)  # weight initialisation is part of the run's reproducibility
        self._wrapped: dict[str, torch.nn.Module] = {}  # DDP wrappers while training under torchrun

    # ---- hooks: how the model configures itself from the data and what it trains on ----------------------------
    @classmethod
    def representation_for(cls, requested: str) -> Representation | None:
        """The (unfitted) candle encoding this model reads when ``requested`` is asked for; None for models that
        compute their own inputs from the bars. ``minmax-ohlcv`` always scales to [-1, 1]."""
        scaling = "minmax" if requested == "minmax-ohlcv" else cls.scaling
        return make_representation(requested, scaling=scaling)

    @classmethod
    def configure(cls, config: dict[str, Any], data: TrainingData) -> dict[str, Any]:
        """Model settings completed from the data (``config`` holds the caller's; theirs win where it makes
        sense): by default the number of features the representation gives."""
        config = dict(config)
        if data.representation is not None:
            config["n_features"] = data.representation.n_features
        if cls.daily_cycle and "season" not in config:
            config["season"] = bars_per_day(data.bars["time"], data.timeframe)
        return config

    def training_arrays(self, data: TrainingData) -> TrainingArrays:
        """The arrays the fit reads: by default every window of ``seq_len`` bars inside a gap-free segment, the
        last ``val_fraction`` of them held out (``TrainingData.split``); with a daily cycle each window's first
        bar's position in the day is its condition."""
        split = data.split(self.config.seq_len)
        return TrainingArrays(split.train.features, self.window_phases(data, split.train.start_index),
                              val=None if split.val is None else split.val.features)

    # ---- the daily cycle (``daily_cycle`` models) ----------------------------------------------------------------
    @property
    def clock_season(self) -> int:
        """Bars per day this model reads the time of day with; 0: no daily cycle."""
        return int(getattr(self.config, "season", 0) or 0) if self.daily_cycle else 0

    def window_phases(self, data: TrainingData, starts: np.ndarray) -> np.ndarray | None:
        """Position in the day (bars since UTC midnight) of the bars at rows ``starts``; None without a cycle."""
        if not self.clock_season:
            return None
        return position_in_day(data.bars["time"].to_numpy()[np.asarray(starts)], self.clock_season)

    def start_phases(self, phases, n: int, seed: int | None) -> torch.Tensor | None:
        """``[n]`` start positions in the day for sampling: the given ones, else ``default_start_phases`` of
        ``seed`` (None: midnight); None without a daily cycle."""
        if not self.clock_season:
            return None
        if phases is not None:
            return torch.as_tensor(np.array(phases, dtype=np.int64)).reshape(-1)
        if seed is None:
            return torch.zeros(n, dtype=torch.long)
        return torch.as_tensor(self.default_start_phases(n, seed))

    def default_start_phases(self, n: int, seed: int) -> np.ndarray | None:
        """The start positions ``sample(n, seed=seed)`` draws when none are given: uniform over the day, from
        their own seeded stream (so ``generation.interpolate_paths`` can start its anchors at the same ones)."""
        if not self.clock_season:
            return None
        stream = torch.Generator().manual_seed(int(seed) + _PHASE_STREAM)
        return torch.randint(0, self.clock_season, (n,), generator=stream).numpy()

    def day_clock(self, phases: torch.Tensor | None, steps: int) -> torch.Tensor | None:
        """``[b, steps, 2]`` sine and cosine of each step's time of day for windows starting at ``phases`` ``[b]``
        (bars since midnight); None without a daily cycle."""
        if not self.clock_season or phases is None:
            return None
        phases = torch.as_tensor(phases, device=self.device).reshape(-1).float()
        angle = 2 * torch.pi * (phases[:, None] + torch.arange(steps, device=self.device)) / self.clock_season
        return torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1)

    # ---- training ----------------------------------------------------------------------------------------------
    def train_step(
        self, batch: torch.Tensor, conditions: torch.Tensor | None, *, epoch: int, total_epochs: int
    ) -> dict[str, float]:
        """One optimisation step on a batch ``[b, seq_len, n_features]``; returns the losses to show and log."""
        raise ModelError(f"{self.name} is not trained step by step")

    def fit_once(self, arrays: TrainingArrays) -> History:
        """The one-pass fit of a model that is not ``iterative`` (GARCH's maximum likelihood); a History row."""
        raise ModelError(f"{self.name} is trained epoch by epoch, not in one pass")

    @property
    def window_length(self) -> int:
        """Steps per training item (``seq_len`` unless the model trains on longer sequences)."""
        return self.config.seq_len

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
    def sample(self, n: int, conditions: np.ndarray | None = None, *, seed: int = 0, length: int | None = None,
               temperature: float | None = None) -> np.ndarray:
        """``n`` windows ``[n, length or seq_len, n_features]`` in model space; same seed -> same numbers.

        The arguments are checked here, once for every model: ``n`` and ``length`` at least 1, ``conditions``
        by ``check_conditions`` (a conditional model draws missing labels with its training frequencies), and
        ``temperature`` only for ``Temperature`` models (None: 1); the others refuse it in one line that says
        what they offer instead. Then the model's ``_sample`` runs."""
        n = _at_least_one(n, "the number of samples")
        length = self.config.seq_len if length is None else _at_least_one(length, "length")
        conditions = self.check_conditions(conditions, n)
        if isinstance(self, Conditional) and conditions is None:
            conditions = self.draw_conditions(n, seed=seed)
        if isinstance(self, Temperature):
            return self._sample(n, conditions, seed=seed, length=length,
                                temperature=self.check_temperature(temperature))
        if temperature is not None:
            raise ModelError(self.no_temperature())
        return self._sample(n, conditions, seed=seed, length=length)

    @abstractmethod
    def _sample(self, n: int, conditions, *, seed: int, length: int, **options) -> np.ndarray:
        """``sample`` after its checks (``Temperature`` models also get ``temperature``, a float)."""

    def check_conditions(self, conditions, n: int):
        """The conditions for ``n`` paths as the model takes them: with a daily cycle, each path's start position
        in the day (bars since midnight, one or ``n``); unconditional models refuse any other."""
        if conditions is not None and self.clock_season:
            start = np.asarray(conditions).reshape(-1)
            if not np.issubdtype(start.dtype, np.integer) and not np.array_equal(start, np.round(start)):
                raise ModelError(f"{self.name} conditions are start positions in the day, whole numbers of bars "
                                 f"since midnight")
            start = np.broadcast_to(start.astype(np.int64), (n,)) if start.size == 1 else start.astype(np.int64)
            if start.shape != (n,) or (start < 0).any() or (start >= self.clock_season).any():
                raise ModelError(f"{self.name} conditions are start positions in the day: one (0.."
                                 f"{self.clock_season - 1}) or one per path ({n}); got {np.asarray(conditions).size}")
            return start
        if conditions is not None:
            raise ModelError(f"{self.name} is unconditional; drop the conditions (use a conditional model such as "
                             f"cgan)")
        return None

    def no_temperature(self) -> str:
        """The one-line refusal of a temperature by a model without one."""
        return f"{self.name} has no sampling temperature; {self.temperature_instead}"

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


_PHASE_STREAM = 7_777_777  # offset of the seed that draws sampled paths' start positions in the day


def with_clock(x: torch.Tensor, clock: torch.Tensor | None) -> torch.Tensor:
    """``[b, T, d]`` with the time-of-day clock's channels (``GenerativeModel.day_clock``) appended; ``x`` itself
    without a daily cycle."""
    return x if clock is None else torch.cat([x, clock[:, : x.shape[1]].to(x.dtype)], dim=2)


def _at_least_one(value, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ModelError(f"{what} must be a whole number, got {value!r}") from None
    if number != value or number < 1:
        raise ModelError(f"{what} must be at least 1, got {value}")
    return number
