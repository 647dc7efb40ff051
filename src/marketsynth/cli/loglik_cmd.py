"""``marketsynth loglik``: the exact log-likelihood of every bar's features under a model with exact likelihood
(``models.capabilities.Likelihood``: the glow flow).

For anomaly and regime screens: a bar whose feature vector (``marketsynth.features.bar_features``) the model
finds unlikely has a low ``loglik_nats`` / high ``nll_bits_per_dim``. The first ``WARMUP_BARS`` bars of the
input only serve as look-back and get no row. Values are log-densities of the raw features (the model's
standardisation is accounted for), so they compare across checkpoints trained on the same features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import typer

from marketsynth.cli.common import console
from marketsynth.cli.options import data_source_options
from marketsynth.data.load import load
from marketsynth.errors import ConfigError, ModelError
from marketsynth.models.capabilities import Likelihood
from marketsynth.models.registry import models_with

_SHOW_LEAST_LIKELY = 3


def register(app: typer.Typer) -> None:
    app.command("loglik")(loglik)


@data_source_options()
def loglik(
    source=None,
    model: Path = typer.Option(..., "--model", "-m", help="Checkpoint directory of a model with exact likelihood ("
                               + ", ".join(models_with(Likelihood)) + ")."),
    output: Path = typer.Option(..., "--output", "-o", help="FILE.csv or FILE.parquet (written atomically)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N | auto."),
) -> None:
    """Write time, loglik_nats and nll_bits_per_dim for every bar (after 20 bars of look-back: --start must leave
    20 earlier bars)."""
    from marketsynth import api
    from marketsynth.generation import write_output

    if output.suffix.lower() not in (".csv", ".parquet"):
        raise ConfigError(f"--output {output}: use a .csv or .parquet file name")
    if not output.parent.exists():
        raise ConfigError(f"--output {output}: folder {output.parent} does not exist")
    require_exact_likelihood(model)
    checkpoint = api.load(model, device=device)
    data = load(source)
    frame = loglik_frame(checkpoint.model, data.bars)
    write_output(frame, output)
    where = getattr(data.source, "path", None) or data.label
    console.print(f"wrote the log-likelihood of {len(frame)} bars of {where} under {checkpoint.model.name} to "
                  f"{output}: mean {frame['nll_bits_per_dim'].mean():.4f} bits/dim (NLL)")
    worst = frame.nsmallest(min(_SHOW_LEAST_LIKELY, len(frame)), "loglik_nats")
    shown = ", ".join(f"{t:%Y-%m-%d %H:%M} ({v:.1f} nats)" for t, v in zip(worst["time"], worst["loglik_nats"],
                                                                            strict=True))
    console.print(f"least likely: {shown}")


def require_exact_likelihood(path: Path):
    """The model class of the checkpoint in ``path``, or a ModelError if it has no exact likelihood."""
    from marketsynth.checkpoint import read_config
    from marketsynth.models.registry import get_model_class

    config = read_config(path)
    cls = get_model_class(config["model"])
    if not issubclass(cls, Likelihood):
        raise ModelError(f"loglik needs a model with exact likelihood ({', '.join(models_with(Likelihood))}); "
                         f"{path} holds a {cls.name}")
    return cls


def loglik_frame(model, bars: pd.DataFrame) -> pd.DataFrame:
    """``time, loglik_nats, nll_bits_per_dim`` of each bar's features under ``model`` (one row per bar after
    the warm-up)."""
    from marketsynth.features import bar_features

    features = bar_features(bars)
    nats = np.asarray(model.log_likelihood(features.to_numpy()), dtype=np.float64)
    bits = -nats / (features.shape[1] * np.log(2))
    time = features.index if isinstance(features.index, pd.DatetimeIndex) else np.arange(len(features))
    return pd.DataFrame({"time": time, "loglik_nats": nats, "nll_bits_per_dim": bits})
