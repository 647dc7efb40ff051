"""Glow: a normalizing flow over per-bar feature vectors, trained by exact maximum likelihood.

What is modelled
    Not candle windows but the 16 per-bar features of ``marketsynth.features.bar_features`` (returns,
    volatility, momentum, volume, range position, candle shape, ATR, RSI): a density over market *states*. It
    samples plausible states and scores how unusual each real bar is (``marketsynth loglik``). Features are not
    invertible to candles, so ``generate`` can only write them (``--normalized``).

How it is fed
    It reads no candle representation (``representation_for`` gives None). ``training_arrays(data)`` computes the
    features from the bars, splits them in time (``splits.chronological``: the last ``val_fraction`` rows held
    out, 0.2 when none is asked for, purging the ``WARMUP_BARS`` rows before the boundary whose look-back
    overlaps the held-out bars), fits the preprocessing on the training rows and returns rows ``[n, 1, 16]``
    (``seq_len`` 1) in feature units for the shared loop (``marketsynth.training``). Everything the model takes
    and returns is in feature units; its preprocessing lives in its JSON state.

Preprocessing: standardise, then whiten with the Gaussian baseline
    Rows are z-scored (``FeatureStandardiser``), then whitened with the Cholesky factor of the full-covariance
    Gaussian baseline fitted to the standardised training rows (``w = L^-1 (z - mu)``). Both maps are affine
    with a known Jacobian, so likelihoods stay exact, and the flow *starts* as the Gaussian baseline (identity
    couplings on whitened data) and only has to learn what is not Gaussian: it trains several times faster.

Units of the likelihood
    The training loss ``nll`` (and ``bpd``, its bits per dimension), the held-out ``val_nll`` and the
    baseline's ``val_nll_gauss`` are nats per dimension of the *standardised* features, so flow and baseline
    compare directly. ``log_likelihood`` (a ``Likelihood`` model; the loglik command) gives nats per vector of the
    raw features: the standardiser's Jacobian ``-sum(log std)`` is included, so it is a density of the features
    themselves.

Temperature
    ``temperature`` multiplies the latent noise (a ``Temperature`` model): the flow maps wider latent draws to
    wider feature vectors; 0 gives the latent mode every time.

Caveat: four features are (nearly) functions of others (momentum_k = exp(return_k) - 1, vol_ratio =
volatility_5 / volatility_20, |body| + shadows = 1), so the data sits near a 12-dimensional surface and its
likelihood in 16 dimensions keeps rising as the flow learns that surface; compare NLLs between models on the
same features, not with other data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from marketsynth import splits
from marketsynth.compute import torch_threads
from marketsynth.errors import DataError, ModelError
from marketsynth.features import FEATURE_NAMES, WARMUP_BARS, FeatureStandardiser, bar_features
from marketsynth.models.base import GenerativeModel, ModelConfig
from marketsynth.models.capabilities import Likelihood, Temperature
from marketsynth.models.data import TrainingArrays, TrainingData
from marketsynth.models.flows import MultiScaleGlow, standard_normal_log_prob
from marketsynth.representation import Representation

DEFAULT_VAL_FRACTION = 0.2
_CHUNK = 8192
_LN2 = math.log(2)
_LOG_2PI = math.log(2 * math.pi)


@dataclass
class GlowConfig(ModelConfig):
    """``seq_len`` is 1 (one feature vector per row) and ``latent_dim`` equals ``n_features`` (a flow keeps the
    dimension; the setting is ignored); ``gen_lr`` is the flow's Adam learning rate, ``disc_lr`` is unused.
    Defaults train 50 epochs on a year of 1h bars in about 80 s on one CPU core. ``cpu_threads``: the matrices
    are tiny, so more threads gain nothing and cost a lot when cores are shared (2 threads on a busy 2-core
    machine trained 5-25x slower than 1); the setting applies only inside glow's own calls."""

    seq_len: int = 1
    n_features: int = len(FEATURE_NAMES)
    latent_dim: int = len(FEATURE_NAMES)
    batch_size: int = 256
    gen_lr: float = 1e-3
    levels: int = 3
    steps_per_level: int = 4
    hidden: int = 64
    clamp: float = 2.0  # each coupling scales by at most exp(±clamp)
    grad_clip: float = 10.0
    cpu_threads: int = 1  # torch intra-op threads on CPU while training/scoring; 0 leaves torch's own setting


class GaussianBaseline:
    """Full-covariance multivariate normal fitted by maximum likelihood: the yardstick the flow must beat, and
    the whitening ``w = L^-1 (x - mean)`` (``cov = L L^T``) in front of the flow."""

    def __init__(self, mean=None, cov=None):
        self.mean = self.cov = self.chol = None
        if mean is not None:
            self._set(np.asarray(mean, dtype=np.float64), np.asarray(cov, dtype=np.float64))

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    def fit(self, rows: np.ndarray) -> GaussianBaseline:
        rows = np.asarray(rows, dtype=np.float64)
        centred = rows - rows.mean(axis=0)
        # a tiny ridge keeps the covariance invertible when a feature is constant or exactly collinear
        self._set(rows.mean(axis=0), centred.T @ centred / len(rows) + 1e-9 * np.eye(rows.shape[1]))
        return self

    def _set(self, mean: np.ndarray, cov: np.ndarray) -> None:
        if mean.ndim != 1 or cov.shape != (len(mean), len(mean)):
            raise ValueError(f"mean {mean.shape} and covariance {cov.shape} do not fit")
        self.mean, self.cov = mean, cov
        self.chol = np.linalg.cholesky(cov)  # LinAlgError (a ValueError) when not positive definite

    def whiten(self, rows: np.ndarray) -> np.ndarray:
        return np.linalg.solve(self.chol, (np.asarray(rows, dtype=np.float64) - self.mean).T).T

    @property
    def whiten_log_abs_det(self) -> float:
        """``log |det dw/dx| = -sum(log diag L)``."""
        return float(-np.log(np.diag(self.chol)).sum())

    def log_prob(self, rows: np.ndarray) -> np.ndarray:
        """``log N(row; mean, cov)`` in nats per row."""
        if not self.fitted:
            raise ModelError("the Gaussian baseline is not fitted")
        w = self.whiten(rows)
        return -0.5 * (w**2).sum(axis=1) - 0.5 * len(self.mean) * _LOG_2PI + self.whiten_log_abs_det

    def to_dict(self) -> dict[str, Any] | None:
        return None if self.mean is None else {"mean": self.mean.tolist(), "cov": self.cov.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping | None) -> GaussianBaseline:
        return cls() if not data else cls(data["mean"], data["cov"])


class GlowModel(Likelihood, Temperature, GenerativeModel):
    """Multi-scale Glow over bar-feature vectors (see the module docstring); exact ``log_likelihood``."""

    name = "glow"
    default_epochs = 50
    Config: ClassVar[type[ModelConfig]] = GlowConfig
    models_candles = False  # per-bar feature vectors, computed from the bars by ``training_arrays``
    native_long_paths = False
    watch_loss = "nll"
    temperature_scales = "the latent noise"
    zero_temperature = True  # the latent mode

    def __init__(self, config: GlowConfig | dict | None = None, *, device: str | torch.device = "cpu",
                 seed: int = 0):
        super().__init__(config, device=device, seed=seed)
        cfg = self.config
        if cfg.seq_len != 1:
            raise ModelError(f"glow models one feature vector per bar: seq_len must be 1, got {cfg.seq_len}")
        if cfg.n_features < 2:
            raise ModelError(f"glow needs at least 2 features, got n_features={cfg.n_features}")
        if cfg.batch_size < 2 or cfg.hidden < 1 or not cfg.clamp > 0:
            raise ModelError("glow needs batch_size >= 2 (ActNorm starts from batch statistics), hidden >= 1 "
                             "and clamp > 0")
        self.flow = MultiScaleGlow(cfg.n_features, cfg.levels, cfg.steps_per_level, cfg.hidden,
                                   cfg.clamp).to(self.device)
        self.optimizer = torch.optim.Adam(self.flow.parameters(), lr=cfg.gen_lr)
        names = FEATURE_NAMES if cfg.n_features == len(FEATURE_NAMES) else \
            tuple(f"feature_{i}" for i in range(cfg.n_features))
        self.standardiser = FeatureStandardiser(names=names)
        self.baseline = GaussianBaseline()
        self.report: dict[str, Any] = {}  # held-out NLLs (flow and baseline), refreshed every validated epoch
        self._affine: dict[str, Any] | None = None

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.standardiser.names

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"flow": self.flow}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"flow": self.optimizer}

    # ---- hooks: no candle encoding; the bars' features, split in time -------------------------------------------
    @classmethod
    def representation_for(cls, requested: str) -> Representation | None:
        return None

    def training_arrays(self, data: TrainingData) -> TrainingArrays:
        """Training and held-out feature rows ``[n, 1, F]`` from the bars, as described in the module docstring.
        Fits the preprocessing unless it is already fitted (a resumed model keeps its own)."""
        features = bar_features(data.bars).to_numpy()
        if features.shape[1] != self.config.n_features:
            raise ModelError(f"bar features have {features.shape[1]} columns; this glow expects "
                             f"{self.config.n_features} (n_features)")
        fraction = data.val_fraction if data.val_fraction and data.val_fraction > 0 else DEFAULT_VAL_FRACTION
        if not 0 < fraction < 1:
            raise ModelError(f"val_fraction must be between 0 and 1, got {data.val_fraction}")
        try:
            fold = splits.chronological(len(features), 1 - fraction, purge=WARMUP_BARS,
                                        min_train=4 * self.config.n_features, min_test=2)
        except DataError:
            raise DataError(f"{len(data.bars)} bars give {len(features)} feature rows: too few to hold out "
                            f"{fraction:.0%} and train a glow; use more data (a few thousand bars)") from None
        train, val = features[fold.train], features[fold.test]
        self.fit_preprocessing(train, val)
        meta = {"features": "bar-features", "warmup_bars": WARMUP_BARS, "train_rows": int(len(train)),
                "val_rows": int(len(val)), "val_nll_gauss": self.report["val_nll_gauss"]}
        # writable copies: torch takes the arrays as they are
        return TrainingArrays(train[:, None, :].copy(), val=val[:, None, :].copy(), meta=meta, kind="feature rows")

    def fit_preprocessing(self, train, val=None) -> None:
        """Fit the standardiser and the Gaussian baseline on training rows unless already fitted (a resumed
        model keeps its own); record the baseline's NLL/dim on them and on held-out rows."""
        dim = self.config.n_features
        train = _rows(train, dim)
        if not self.standardiser.fitted:
            self.standardiser.fit(train)
        if not self.baseline.fitted:
            self.baseline.fit(self.standardiser.transform(train))
        self._affine = None
        self.report["train_nll_gauss"] = float(-self.baseline.log_prob(self.standardiser.transform(train)).mean()
                                               / dim)
        if val is not None:
            z_val = self.standardiser.transform(_rows(val, dim))
            self.report["val_nll_gauss"] = float(-self.baseline.log_prob(z_val).mean() / dim)

    def _preprocessing(self) -> dict[str, Any]:
        """Raw rows -> flow input is ``w = (x - shift) @ matrix.T`` (standardise, then whiten); float64 tensors.
        ``z_logdet`` maps densities of whitened rows to standardised ones, ``x_logdet`` standardised to raw."""
        if self._affine is None:
            dim = self.config.n_features
            if self.standardiser.fitted and self.baseline.fitted:
                std, chol = self.standardiser.std, self.baseline.chol
                matrix = np.linalg.solve(chol, np.diag(1.0 / std))  # L^-1 diag(1/std)
                shift = self.standardiser.mean + std * self.baseline.mean
                inverse = np.diag(std) @ chol
                z_logdet, x_logdet = self.baseline.whiten_log_abs_det, self.standardiser.log_abs_det
            else:  # untrained: the flow sees raw rows
                matrix, inverse, shift, z_logdet, x_logdet = np.eye(dim), np.eye(dim), np.zeros(dim), 0.0, 0.0
            as64 = lambda a: torch.as_tensor(a, dtype=torch.float64, device=self.device)  # noqa: E731
            self._affine = {"matrix": as64(matrix), "inverse": as64(inverse), "shift": as64(shift),
                            "z_logdet": z_logdet, "x_logdet": x_logdet}
        return self._affine

    def _flow_input(self, x: torch.Tensor) -> torch.Tensor:
        prep = self._preprocessing()
        return ((x.to(self.device, torch.float64) - prep["shift"]) @ prep["matrix"].T).float()

    # ---- training ------------------------------------------------------------------------------------------
    def train_step(self, batch: torch.Tensor, conditions: torch.Tensor | None, *, epoch: int,
                   total_epochs: int) -> dict[str, float]:
        _no_conditions(conditions)
        x = batch.reshape(len(batch), -1)
        if not self.standardiser.fitted:  # fed straight to the loop without fit(): the first batch has to do
            self.fit_preprocessing(x.detach().cpu().numpy())
        with _threads(self):
            log_prob = self.flow.log_prob(self._flow_input(x)) + self._preprocessing()["z_logdet"]
            nll = -log_prob.mean() / self.config.n_features
            self.optimizer.zero_grad(set_to_none=True)
            nll.backward()
            if self.config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.flow.parameters(), self.config.grad_clip)
            self.optimizer.step()
        value = nll.item()
        return {"nll": value, "bpd": value / _LN2}

    def validation_losses(self, val: torch.Tensor) -> dict[str, float]:
        """Held-out NLL per dimension (standardised units) of the flow and of the Gaussian baseline."""
        if not self.standardiser.fitted:
            return {}
        rows, dim = _rows(val, self.config.n_features), self.config.n_features
        nll = float(-(self.log_likelihood(rows) - self.standardiser.log_abs_det).mean() / dim)
        out = {"val_nll": nll, "val_bpd": nll / _LN2,
               "val_nll_gauss": float(-self.baseline.log_prob(self.standardiser.transform(rows)).mean() / dim)}
        self.report.update(out)
        return out

    # ---- likelihood ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def log_likelihood(self, features) -> np.ndarray:
        """Exact log-density of raw feature rows ``[n, F]`` (or ``[n, 1, F]``) in nats per vector."""
        if not self.standardiser.fitted:
            raise ModelError("this glow has not been trained (its standardiser is not fitted)")
        rows = torch.tensor(_rows(features, self.config.n_features))  # a copy: pandas hands out read-only arrays
        prep, was_training = self._preprocessing(), self.flow.training
        self.flow.eval()
        try:
            with _threads(self):
                out = [self.flow.log_prob(self._flow_input(chunk)).double().cpu() for chunk in rows.split(_CHUNK)]
        finally:
            self.flow.train(was_training)
        flow = torch.cat(out).numpy() if out else np.zeros(0)
        return flow + prep["z_logdet"] + prep["x_logdet"]

    @torch.no_grad()
    def encode(self, features) -> tuple[np.ndarray, np.ndarray]:
        """Latent codes ``z`` ``[n, F]`` (float64) of raw feature rows, the inverse of ``generate_from_latent``, and
        their ``log_likelihood`` (nats per vector, the same numbers), from one pass through the flow."""
        if not self.standardiser.fitted:
            raise ModelError("this glow has not been trained (its standardiser is not fitted)")
        rows = torch.tensor(_rows(features, self.config.n_features))
        prep, was_training = self._preprocessing(), self.flow.training
        self.flow.eval()
        codes, logps = [], []
        try:
            with _threads(self):
                for chunk in rows.split(_CHUNK):
                    z, logdet = self.flow(self._flow_input(chunk))
                    codes.append(z.double().cpu())
                    logps.append((standard_normal_log_prob(z) + logdet).double().cpu())
        finally:
            self.flow.train(was_training)
        dim = self.config.n_features
        z = torch.cat(codes).numpy() if codes else np.zeros((0, dim))
        flow = torch.cat(logps).numpy() if logps else np.zeros(0)
        return z, flow + prep["z_logdet"] + prep["x_logdet"]

    # ---- generation ----------------------------------------------------------------------------------------
    def _sample(self, n: int, conditions, *, seed: int, length: int, temperature: float) -> np.ndarray:
        """``[n, length, F]`` feature vectors in feature units, independent of each other (no time order).
        ``temperature`` scales the latent noise; 0 gives the same point every time (the latent mode)."""
        z = self.sample_latent(n * length, seed=seed) * float(temperature)
        return self.generate_from_latent(z).reshape(n, length, -1)

    def sample_latent(self, n: int, *, seed: int = 0) -> torch.Tensor:
        """Standard normal codes ``[n, F]``; ``generate_from_latent`` of them equals ``sample(n, seed=seed)``
        (of length 1)."""
        return torch.randn(n, self.config.n_features, generator=self.noise_generator(seed))

    @torch.no_grad()
    def generate_from_latent(self, z: torch.Tensor, conditions: np.ndarray | None = None) -> np.ndarray:
        _no_conditions(conditions)
        z = torch.as_tensor(z, dtype=torch.float32)
        if z.ndim != 2 or z.shape[1] != self.config.n_features:
            raise ModelError(f"latent codes must be [n, {self.config.n_features}], got {tuple(z.shape)}")
        prep, was_training = self._preprocessing(), self.flow.training
        self.flow.eval()
        try:
            with _threads(self):
                w = torch.cat([self.flow.inverse(chunk.to(self.device)) for chunk in z.split(_CHUNK)])
        finally:
            self.flow.train(was_training)
        rows = w.double() @ prep["inverse"].T + prep["shift"]
        return rows.cpu().numpy().astype(np.float32)[:, None, :]

    # ---- persistence ---------------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {"standardiser": self.standardiser.to_dict(), "baseline": self.baseline.to_dict(),
                "report": dict(self.report)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("standardiser") is not None:
            self.standardiser = FeatureStandardiser.from_dict(state["standardiser"])
        try:
            self.baseline = GaussianBaseline.from_dict(state.get("baseline"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"the saved Gaussian baseline of this glow is malformed ({exc})") from exc
        self.report = dict(state.get("report") or {})
        self._affine = None

    def heldout_summary(self) -> str | None:
        """One line comparing held-out NLL/dim of the flow and the Gaussian baseline, when both are known."""
        flow, gauss = self.report.get("val_nll"), self.report.get("val_nll_gauss")
        if flow is None or gauss is None:
            return None
        verdict = "beats" if flow < gauss else "does NOT beat"
        return (f"held-out NLL: flow {flow:.4f} vs Gaussian {gauss:.4f} nats/dim (standardised features; "
                f"{flow / _LN2:.4f} vs {gauss / _LN2:.4f} bits/dim): the flow {verdict} the baseline")


def _threads(model: GlowModel):
    """``cpu_threads`` intra-op threads for the flow's CPU work (``marketsynth.compute``)."""
    return torch_threads(model.config.cpu_threads if model.device.type == "cpu" else None)


def _rows(values, n_features: int) -> np.ndarray:
    array = np.asarray(values.detach().cpu().numpy() if hasattr(values, "detach") else values, dtype=np.float64)
    array = array.reshape(len(array), -1) if array.ndim == 3 else array
    if array.ndim != 2 or array.shape[1] != n_features:
        raise ModelError(f"feature rows must be [n, {n_features}] or [n, 1, {n_features}], got {array.shape}")
    if not np.isfinite(array).all():
        raise DataError("feature rows contain NaN or inf")
    return array


def _no_conditions(conditions) -> None:
    if conditions is not None:
        raise ModelError("glow is unconditional; drop the conditions")
