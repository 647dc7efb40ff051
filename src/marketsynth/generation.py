"""From a trained model to synthetic candles: sample, decode, frame, write.

Long paths (``length`` > the training window ``seq_len``):
    * recurrent models (``native_long_paths``: wgan-gp, timegan, garch, autoregressive) run their state for
      ``length`` steps, so a long path is one continuous process;
    * window models (dcgan) chain ``ceil(length / seq_len)`` independent windows end to end in feature space
      and crop to ``length``. With the default ``log-returns`` representation every bar is encoded relative to
      the previous close, so the chained path is continuous in price (each window starts from the last close of
      the one before) but nothing carries volatility or trend across a window boundary. With ``minmax-ohlcv``
      (absolute prices) each window is an independent price level, so expect jumps at the boundaries.

Interpolation walks the latent space between consecutive samples: for ``n`` latent codes and ``steps`` K, the
codes ``slerp(z_i, z_{i+1}, k / K)`` for ``k = 0..K-1`` and every pair, then ``z_{n-1}``: ``(n - 1) K + 1``
windows whose ``sample_id`` runs along the walk. Spherical interpolation keeps the codes at the norm the
Gaussian prior puts them at (a straight line between two Gaussian codes passes through low-norm codes the
generator never saw); it falls back to linear interpolation for (nearly) parallel codes.

Conditional models (``models.capabilities.Conditional``: cgan) generate the regime asked for (``regime``) or,
without one, labels drawn with the training windows' regime frequencies (interpolation walks use one regime: the
asked one or the most common); their frames get a ``regime`` column. Unconditional models that read the time of
day (``GenerativeModel.daily_cycle``, intraday bars) start each path at a drawn position in the day and their frames
get a ``bar_of_day`` column (bars since UTC midnight), which ``evaluate --diagnose`` uses for the daily cycle.
A ``temperature`` goes only to models that
have one (``Temperature``); the others refuse it in one line (``GenerativeModel.sample``).

Outputs are deterministic: the same checkpoint, options and seed give a byte-identical file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from marketsynth.errors import ModelError
from marketsynth.models.base import GenerativeModel
from marketsynth.models.capabilities import Conditional
from marketsynth.models.registry import models_with


def sample_paths(model: GenerativeModel, n: int, *, seed: int = 0, length: int | None = None,
                 temperature: float | None = None, conditions=None) -> np.ndarray:
    """``[n, length, F]`` in model space (long paths as described in the module docstring); the model checks
    the arguments."""
    return np.asarray(model.sample(n, conditions, seed=seed, length=length, temperature=temperature))


def interpolate_paths(model: GenerativeModel, n: int, steps: int, *, seed: int = 0,
                      conditions=None) -> np.ndarray:
    """Windows along a spherical walk through ``n`` latent codes, ``steps`` per pair: ``[(n-1)*steps + 1, L, F]``."""
    if not model.has_latent:
        raise ModelError(f"{model.name} has no latent space to interpolate in; drop --interpolate")
    if n < 2:
        raise ModelError(f"--interpolate walks between samples, so it needs --num-samples of at least 2, got {n}")
    if steps < 1:
        raise ModelError(f"--interp-steps must be at least 1, got {steps}")
    z = torch.as_tensor(model.sample_latent(n, seed=seed), dtype=torch.float32)
    fractions = torch.arange(steps, dtype=torch.float64) / steps
    walk = [slerp(z[i], z[i + 1], t) for i in range(n - 1) for t in fractions.tolist()]
    phases = model.default_start_phases(n, seed) if conditions is None and not isinstance(model, Conditional) else None
    if phases is not None:  # a model with a daily cycle: each anchor starts where ``sample`` starts it
        conditions = np.concatenate([np.repeat(phases[:-1], steps), phases[-1:]])
    return np.asarray(model.generate_from_latent(torch.stack([*walk, z[-1]]), conditions))


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between codes of any shape (treated as flat vectors); linear when parallel."""
    a64, b64 = a.double().flatten(), b.double().flatten()
    cos = torch.dot(a64, b64) / (a64.norm() * b64.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if float(torch.sin(omega).abs()) < 1e-6:
        mixed = (1 - t) * a64 + t * b64
    else:
        mixed = (torch.sin((1 - t) * omega) * a64 + torch.sin(t * omega) * b64) / torch.sin(omega)
    return mixed.reshape(a.shape).to(a.dtype)


def generate_frame(model: GenerativeModel, representation, n: int, *, seed: int = 0, length: int | None = None,
                   start_price: float | None = None, normalized: bool = False, interpolate: bool = False,
                   interp_steps: int = 10, temperature: float | None = None,
                   regime: str | None = None) -> pd.DataFrame:
    """Synthetic candles as a long frame ``sample_id, timestep, open, high, low, close, volume`` (price units,
    anchored at ``start_price`` or the representation's last real close), or with ``normalized`` the model-space
    features ``sample_id, timestep, <feature names>``; plus ``regime`` for conditional models and ``bar_of_day`` for
    models with a daily cycle."""
    labels = phases = None
    if interpolate:
        if length is not None and length != model.config.seq_len:
            raise ModelError(f"--interpolate walks between windows of the training length "
                             f"({model.config.seq_len}); drop --length")
        if temperature is not None:
            raise ModelError("--interpolate walks the latent codes as drawn; drop --temperature")
        if isinstance(model, Conditional):
            label = regime_conditions(model, regime, 1)[0] if regime else model.most_common_regime()
            labels = np.full((max(n, 2) - 1) * max(interp_steps, 1) + 1, label, dtype=np.int64)
        array = interpolate_paths(model, n, interp_steps, seed=seed, conditions=labels)
    else:
        if isinstance(model, Conditional):
            labels = regime_conditions(model, regime, n) if regime else model.draw_conditions(n, seed=seed)
        elif regime is not None:
            regime_conditions(model, regime, n)  # the one-line error
        else:
            phases = model.default_start_phases(n, seed)  # what ``sample`` would draw; None without a clock
        array = sample_paths(model, n, seed=seed, length=length, temperature=temperature,
                             conditions=labels if phases is None else phases)
    if normalized:
        names = representation.feature_names if representation is not None else getattr(model, "feature_names", None)
        names = list(names) if names else [f"feature_{i}" for i in range(array.shape[-1])]
        return _with_clock(_with_regimes(features_frame(array, names), model, labels), model, phases)
    if representation is None:
        raise ModelError("this checkpoint has no representation.json, so its output cannot be decoded to "
                         "candles; use --normalized")
    if start_price is not None and not (np.isfinite(start_price) and start_price > 0):
        raise ModelError(f"--start-price must be a positive price, got {start_price}")
    return _with_clock(_with_regimes(representation.decode_frames(array, start_price), model, labels), model, phases)


def regime_conditions(model: GenerativeModel, regime: str | None, n: int):
    """Label indices for ``n`` windows of ``regime`` (None without one), or a one-line error."""
    if regime is None:
        return None
    if not isinstance(model, Conditional):
        raise ModelError(f"{model.name} is not conditional, so --regime {regime} does not apply; drop it, or train "
                         f"--model {' or '.join(models_with(Conditional))}")
    return model.encode_conditions([regime] * n)


def _with_clock(frame: pd.DataFrame, model: GenerativeModel, phases) -> pd.DataFrame:
    """A ``bar_of_day`` column (bars since UTC midnight) for models that generate at a time of day."""
    if phases is not None:
        start = np.asarray(phases, dtype=np.int64)[frame["sample_id"].to_numpy()]
        frame["bar_of_day"] = (start + frame["timestep"].to_numpy()) % model.clock_season
    return frame


def _with_regimes(frame: pd.DataFrame, model: GenerativeModel, labels) -> pd.DataFrame:
    if labels is not None:
        frame["regime"] = np.asarray(model.regimes, dtype=object)[np.asarray(labels)][frame["sample_id"].to_numpy()]
    return frame


def features_frame(array: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Model-space windows ``[n, L, F]`` as a long frame ``sample_id, timestep, <names>``."""
    n, length, n_features = array.shape
    if len(names) != n_features:
        raise ModelError(f"{n_features} features but {len(names)} names ({', '.join(names)})")
    frame = pd.DataFrame(np.asarray(array, dtype=np.float64).reshape(n * length, n_features), columns=names)
    frame.insert(0, "timestep", np.tile(np.arange(length), n))
    frame.insert(0, "sample_id", np.repeat(np.arange(n), length))
    return frame


def write_output(frame: pd.DataFrame, path: str | Path) -> Path:
    """CSV or Parquet (DuckDB) by suffix, written atomically: a failure leaves an existing file untouched."""
    from marketsynth.data.io import write_frame

    write_frame(frame, path)
    return Path(path)
