"""``marketsynth train`` and ``marketsynth generate``: fit a generative model, then sample synthetic candles."""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import typer
import yaml

from marketsynth.cli.common import console, err_console, stage_display
from marketsynth.cli.options import data_source_options
from marketsynth.config import Settings, load_settings
from marketsynth.data.load import label_of
from marketsynth.errors import ConfigError
from marketsynth.models.capabilities import Conditional, Temperature
from marketsynth.models.registry import DEFAULT_MODEL, MODELS, model_names, models_with

MODEL_HELP = "Model: " + " | ".join(model_names()) + "."
LONG_PATHS = ("Longer than the training window: recurrent models ("
              + ", ".join(n for n, c in MODELS.items() if c.native_long_paths and c.models_candles)
              + ") continue their state; "
              + ", ".join(n for n, c in MODELS.items() if not c.native_long_paths and c.models_candles)
              + " chains independent windows (continuous in price with log-returns features).")
EPOCHS_HELP = ("Epochs in total, also with --resume (default: the model's own: "
               + ", ".join(f"{n} {c.default_epochs}" for n, c in MODELS.items()) + ").")
TEMPERATURE_HELP = ("Sampling temperature (1 = as trained), only for models whose temperature widens the "
                    "distribution: " + ", ".join(models_with(Temperature)) + "; others refuse it (cgan: use --regime "
                    "crash).")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("generate")(generate)


@data_source_options()
def train(
    source=None,
    model: str = typer.Option(None, "--model", "-m", help=MODEL_HELP + " Default: the config file's model.name."),
    config: Path = typer.Option(None, "--config", "-c", help="marketsynth.yaml; options given here override it."),
    seq_len: int = typer.Option(None, "--seq-len", min=2, help="Bars per training window (default: 24)."),
    epochs: int = typer.Option(None, "--epochs", min=1, help=EPOCHS_HELP),
    batch_size: int = typer.Option(None, "--batch-size", min=2, help="Windows per batch (default: the model's)."),
    latent_dim: int = typer.Option(None, "--latent-dim", min=1, help="Noise size (default: the model's)."),
    gen_lr: float = typer.Option(None, "--gen-lr",
                                 help="Generator learning rate (default: the model's; 2e-4 for dcgan, wgan-gp)."),
    disc_lr: float = typer.Option(None, "--disc-lr", help="Discriminator/critic learning rate (default: as --gen-lr)."),
    option: list[str] = typer.Option(None, "--option", "-O", help="Model setting KEY=VALUE, e.g. n_critic=3."),
    seed: int = typer.Option(None, "--seed", help="Seed for weights, batches and noise (default: 0)."),
    device: str = typer.Option(None, "--device", help="cpu | cuda | cuda:N | auto (default: cpu)."),
    out: Path = typer.Option(None, "--out", "-o", help="Checkpoint dir (default: runs/<model>-<symbol|file>)."),
    checkpoint_every: int = typer.Option(None, "--checkpoint-every", min=1,
                                         help="Epochs per checkpoint (default: 10)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the checkpoint in --out exactly."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing checkpoint in --out."),
    representation: str = typer.Option(None, "--representation",
                                       help="log-returns | log-returns-level | minmax-ohlcv (default: log-returns)."),
    val_fraction: float = typer.Option(0.0, "--val-fraction", min=0.0, max=0.9,
                                       help="Hold out the last fraction of windows; logs val_w1 per epoch."),
    label_column: str = typer.Option(None, "--label-column",
                                     help="cgan: regime labels per bar from this column of the --csv file (a window "
                                          "takes its bars' majority label); default: automatic bull/bear/crash/"
                                          "sideways, thresholds via -O q_crash=0.1 -O q_bear=0.3 -O q_bull=0.7."),
) -> None:
    """Train a generative model on real candles and save a checkpoint directory.

    Under 'torchrun --nproc_per_node K marketsynth train ...' it trains with DistributedDataParallel
    (NCCL on CUDA, gloo on CPU); only rank 0 writes. Ctrl-C keeps the last checkpoint; --resume continues it.
    """
    from marketsynth import api

    settings = load_settings(config) if config else Settings()
    name = model or ((settings.model.name or DEFAULT_MODEL) if config else None)
    if not name:
        raise ConfigError(f"say which model: --model {' | '.join(model_names())} (or --config FILE)")
    model_config = _model_config(settings, seq_len=seq_len, latent_dim=latent_dim, batch_size=batch_size,
                                 gen_lr=gen_lr, disc_lr=disc_lr, options=option or [])
    ts = settings.training
    source_name = label_of(source).split()[-2] if hasattr(source, "symbol") else label_of(source).split(".")[0]
    out = out or Path(ts.out) / f"{name.lower()}-{source_name.replace(' ', '-')}"
    with one_line_warnings(), stage_display() as progress:
        result = api.train(
            name, source=source, representation=representation or settings.model.representation, config=model_config,
            epochs=epochs or ts.epochs,
            seed=ts.seed if seed is None else seed, device=device or ts.device,
            out=out, checkpoint_every=checkpoint_every or ts.checkpoint_every, resume=resume,
            overwrite=overwrite, val_fraction=val_fraction, progress=progress, label_column=label_column,
        )
    if int(os.environ.get("RANK", "0")) != 0:
        return
    rows = result.history.rows
    how = f"{rows[-1].get('epoch', len(rows)) if rows else 0} epoch(s)" if result.model.iterative else "one fit"
    console.print(f"trained {result.model.name}: {how} on {result.items} from "
                  f"{result.source.get('path') or label_of(source)}")
    losses = "  ".join(f"{k} {v:.4g}" for k, v in result.final_losses.items() if isinstance(v, int | float))
    console.print(f"final: {losses}")
    if isinstance(result.model, Conditional):
        for line in result.model.describe_regimes():
            console.print(line, markup=False, highlight=False)
    console.print(f"checkpoint: {out}  (next: marketsynth generate --model {out} --num-samples 100 "
                  f"--output samples.csv)")


def generate(
    model: Path = typer.Option(..., "--model", "-m", help="Checkpoint directory written by 'marketsynth train'."),
    num_samples: int = typer.Option(100, "--num-samples", "-n", min=1, help="Paths (or interpolation anchors)."),
    output: Path = typer.Option(..., "--output", "-o", help="FILE.csv or FILE.parquet (written atomically)."),
    start_price: float = typer.Option(None, "--start-price", help="Close before each path (default: last real close)."),
    length: int = typer.Option(None, "--length", min=1, help="Bars per path (default: seq_len). " + LONG_PATHS),
    seed: int = typer.Option(0, "--seed", help="Same seed, same file (byte for byte)."),
    normalized: bool = typer.Option(False, "--normalized", help="Write model-space features, not prices."),
    interpolate: bool = typer.Option(False, "--interpolate",
                                     help="Walk the latent space between consecutive samples (spherical)."),
    interp_steps: int = typer.Option(10, "--interp-steps", min=1, help="Steps between two samples."),
    temperature: float = typer.Option(None, "--temperature", help=TEMPERATURE_HELP),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N | auto."),
    regime: str = typer.Option(None, "--regime", help="cgan: generate this regime (e.g. bull, bear, crash); "
                                                      "default: the training mix."),
) -> None:
    """Sample synthetic candles: CSV/Parquet with sample_id, timestep, open, high, low, close, volume.

    With --interpolate, N samples give (N-1)*K+1 windows along a spherical walk through their latent codes.
    """
    from marketsynth import api

    if output.suffix.lower() not in (".csv", ".parquet"):
        raise ConfigError(f"--output {output}: use a .csv or .parquet file name")
    if not output.parent.exists():
        raise ConfigError(f"--output {output}: folder {output.parent} does not exist")
    checkpoint = api.load(model, device=device)
    frame = api.sample(checkpoint, num_samples, seed=seed, length=length, start_price=start_price,
                       normalized=normalized, interpolate=interpolate, interp_steps=interp_steps,
                       temperature=temperature, output=output, regime=regime)
    paths, bars = frame["sample_id"].nunique(), frame["timestep"].nunique()
    kind = "model-space windows" if normalized else "candle paths"
    console.print(f"wrote {paths} {kind} x {bars} bars ({len(frame)} rows) from {checkpoint.model.name} "
                  f"to {output}")
    if isinstance(checkpoint.model, Conditional) and not normalized:
        _print_regime_stats(checkpoint.model, frame)


def _print_regime_stats(model, frame) -> None:
    """Per regime: mean maximum drawdown and crash duration of the generated paths next to the real training
    windows with that label (stored in the checkpoint at training time)."""
    from rich.table import Table

    from marketsynth.regimes import frame_regime_stats

    generated, real = frame_regime_stats(frame, model.regimes), model.real_stats
    table = Table("regime", "samples", "max drawdown gen", "real", "crash bars gen", "real", "real windows")
    for name, stats in generated.items():
        ref = real.get(name, {})
        table.add_row(name, str(stats["windows"]), f"{stats['max_drawdown']:.2%}",
                      f"{ref['max_drawdown']:.2%}" if ref else "-", f"{stats['crash_duration']:.1f}",
                      f"{ref['crash_duration']:.1f}" if ref else "-", str(ref.get("windows", "-")))
    console.print(table)
    console.print("means per path; max drawdown: the deepest fall of the closes from a running peak; crash bars: "
                  "the bars from that peak to its trough; real: the training windows with that label")
    if frame["timestep"].nunique() != model.config.seq_len:
        console.print(f"note: generated paths have {frame['timestep'].nunique()} bars, the real windows "
                      f"{model.config.seq_len}; drawdowns grow with length, so compare with care")


def _model_config(settings: Settings, *, options: list[str], **cli: int | float | None) -> dict:
    """Model settings: the config file's explicitly set keys, then its model.options, then the CLI options."""
    config: dict = {}
    for section, keys in ((settings.model, ("seq_len", "latent_dim")),
                          (settings.training, ("batch_size", "gen_lr", "disc_lr"))):
        config.update({k: getattr(section, k) for k in keys if k in section.model_fields_set})
    config.update(settings.model.options)
    config.update({k: v for k, v in cli.items() if v is not None})
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option '{item}' is not KEY=VALUE, e.g. --option n_critic=3")
        try:
            config[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"--option {item}: unreadable value (use YAML: 3, 1e-4, [64, 32], true)") from None
    return config


@contextmanager
def one_line_warnings():
    """Show warnings as 'warning: ...' lines on stderr (not file:line plus source)."""
    def show(message, category, filename, lineno, file=None, line=None):
        err_console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
