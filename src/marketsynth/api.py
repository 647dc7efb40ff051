"""The Python API, mirroring ``marketsynth train`` and ``marketsynth generate``::

    from marketsynth import api

    bars, source = api.load_bars(csv="BTCUSDT_1h.csv")
    result = api.train("wgan-gp", bars, epochs=20, out="runs/wgan-btc")
    frame = api.sample("runs/wgan-btc", 100, seed=1, length=240)   # sample_id, timestep, open ... volume

Library code takes plain keyword arguments; config files are read by the CLI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from marketsynth.checkpoint import Checkpoint, is_checkpoint, load_checkpoint
from marketsynth.data.load import DataSource, FileSource, MarketData, SampleSource, StoreSource, source_to_dict
from marketsynth.data.load import load as load_market_data
from marketsynth.errors import ConfigError, ModelError
from marketsynth.models.base import GenerativeModel, History
from marketsynth.models.capabilities import Conditional
from marketsynth.models.registry import DEFAULT_MODEL, get_model_class, models_with
from marketsynth.progress import Progress


@dataclass
class TrainResult:
    model: GenerativeModel
    representation: Any
    history: History
    checkpoint: Path | None
    n_windows: int  # training items (windows, sequences, bars, feature rows), before any balancing
    source: dict[str, Any] = field(default_factory=dict)
    items: str = ""  # what the model trained on, e.g. "1976 windows of 24 bars"

    @property
    def final_losses(self) -> dict[str, float]:
        last = self.history.rows[-1] if self.history.rows else {}
        return {k: v for k, v in last.items() if k not in ("epoch", "seconds", "phase")}


def load_bars(*, csv: str | Path | None = None, sample: str | None = None, symbol: str | None = None,
              interval: str | None = None, exchange: str | None = None, store: str | None = None, start=None,
              end=None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Candles from a CSV/Parquet file, a bundled sample or the store, limited to [start, end); and a description
    of where they came from (``kind`` and the source's fields, then its span). ``load_data`` gives the full
    ``MarketData``."""
    data = load_data(csv=csv, sample=sample, symbol=symbol, interval=interval, exchange=exchange, store=store,
                     start=start, end=end)
    return data.bars, {**source_to_dict(data.source), **data.description}


def load_data(*, csv: str | Path | None = None, sample: str | None = None, symbol: str | None = None,
              interval: str | None = None, exchange: str | None = None, store: str | None = None, start=None,
              end=None) -> MarketData:
    """The candles a file, a sample or a store query names, through the one loader (``marketsynth.data.load``)."""
    if sum(x is not None for x in (csv, sample, symbol)) != 1:
        raise ConfigError("say where the candles come from: csv=FILE, sample=NAME, or symbol=S with interval=I")
    if csv is not None:
        return load_market_data(FileSource(str(csv), interval, start, end))
    if sample is not None:
        return load_market_data(SampleSource(sample, start, end))
    if interval is None:
        raise ConfigError("--symbol needs --interval, e.g. --interval 1h")
    return load_market_data(StoreSource(symbol.upper(), interval, exchange, store, start, end))


def train(model: str = DEFAULT_MODEL, bars: pd.DataFrame | None = None, *, csv=None, symbol: str | None = None,
          interval: str | None = None, exchange: str | None = None, store: str | None = None, start=None,
          end=None, representation: str = "log-returns", config: dict[str, Any] | None = None,
          epochs: int | None = None, seed: int = 0, device: str = "cpu", out: str | Path | None = None,
          checkpoint_every: int = 10, resume: bool = False, overwrite: bool = False, val_fraction: float = 0.0,
          progress: Progress | bool | None = None, on_epoch=None, label_column: str | None = None,
          data_source: dict[str, Any] | None = None, source: DataSource | None = None) -> TrainResult:
    """Fit a registered model on candles (``bars``; or ``source``, a ``data.load`` data source; or loaded like
    ``load_bars``) and checkpoint it to ``out``.

    ``config`` holds model settings (``seq_len``, ``latent_dim``, ``batch_size``, ``gen_lr``, ``disc_lr`` and
    model-specific ones); unspecified ones take the model's defaults. ``epochs`` defaults to the model's
    ``default_epochs``. With ``resume`` the model, its settings and the representation come from the checkpoint
    in ``out`` and ``epochs`` is the total to reach. Under ``torchrun`` this trains with DistributedDataParallel
    (see ``marketsynth.training``). ``data_source`` (``data.load.source_to_dict``) records where given ``bars``
    came from, so the checkpoint can find its real data again (``scenarios``). Conditional models (cgan) get one
    regime label per training window: automatic (``marketsynth.regimes``) or the majority of the per-bar labels
    in ``label_column`` (a column of ``bars`` or of the ``csv`` file). ``progress``: a
    ``marketsynth.progress.Progress`` that receives the ``train`` stage (the CLI passes one that draws it);
    anything else trains silently.

    Every model takes the same path (``models.base``): its representation, ``configure`` from the data,
    ``training_arrays`` from the gap-free bar segments, then ``training.fit_model``.
    """
    from marketsynth.regimes import bar_labels
    from marketsynth.training import distributed_session, fit_model, resolve_device
    from marketsynth.training.from_bars import prepare

    cls = get_model_class(model)
    if label_column and not issubclass(cls, Conditional):
        raise ConfigError(f"--label-column only applies to conditional models ({', '.join(models_with(Conditional))}), "
                          f"not {cls.name}")
    config = dict(config or {})
    epochs = cls.default_epochs if epochs is None else epochs
    out = Path(out) if out is not None else None
    with distributed_session(device) as info:
        torch_device = resolve_device(device)  # fail before any work when the device does not exist
        _check_out(out, resume=resume, overwrite=overwrite, model=cls.name)
        if info.active:  # every rank has checked --out before rank 0 writes its first checkpoint there
            import torch.distributed as dist

            dist.barrier()
        if bars is None:
            market = load_market_data(source) if source is not None else load_data(
                csv=csv, symbol=symbol, interval=interval, exchange=exchange, store=store, start=start, end=end)
            bars, interval = market.bars, interval or market.adjacent
            csv = csv if csv is not None else getattr(market.source, "path", None)
            source = {**source_to_dict(market.source), **market.description}
        else:
            source = {**(data_source or {"kind": "frame"}), "bars": len(bars)}  # where ``bars`` came from
        resumed = None
        if resume:
            loaded = load_checkpoint(out, device=torch_device)
            _check_same_settings(loaded, cls.name, config)
            resumed = (loaded.model, loaded.representation)
            loaded.model.seed = seed
        labels = bar_labels(bars, label_column, csv) if label_column else None
        ready = prepare(cls.name, bars, timeframe=interval, config=config, representation=representation,
                        val_fraction=val_fraction, label_column=label_column, bar_labels=labels, seed=seed,
                        device=torch_device, resumed=resumed)
        net, rep, arrays = ready.model, ready.representation, ready.arrays
        rep_name = rep.name if rep is not None else "bar-features"
        meta = {**source, "representation": rep_name, "windows": arrays.count, **arrays.meta}
        settings = {"representation": rep_name, "val_fraction": val_fraction, "epochs": epochs}
        history = fit_model(net, arrays, epochs=epochs, out=out, resume=resume, seed=seed,
                            checkpoint_every=checkpoint_every, progress=progress if isinstance(progress, Progress)
                            else None, on_epoch=on_epoch, representation=rep, meta=meta, settings=settings)
    return TrainResult(net, rep, history, out, arrays.count, source, arrays.describe())


def load(path: str | Path, *, device: str = "cpu") -> Checkpoint:
    """A trained checkpoint: ``.model``, ``.representation``, ``.meta``, ``.history``."""
    from marketsynth.training import resolve_device

    return load_checkpoint(path, device=resolve_device(device))


def sample(model: Checkpoint | str | Path, num_samples: int = 100, *, seed: int = 0, length: int | None = None,
           start_price: float | None = None, normalized: bool = False, interpolate: bool = False,
           interp_steps: int = 10, temperature: float | None = None, device: str = "cpu",
           output: str | Path | None = None, regime: str | None = None) -> pd.DataFrame:
    """Synthetic candles from a checkpoint as a long frame (see ``marketsynth.generation``); also written to
    ``output`` (.csv or .parquet) when given. ``regime``: the label a conditional model (cgan) generates;
    ``temperature``: only for models with a sampling temperature (``models.capabilities.Temperature``)."""
    from marketsynth.generation import generate_frame, write_output

    checkpoint = model if isinstance(model, Checkpoint) else load(model, device=device)
    frame = generate_frame(checkpoint.model, checkpoint.representation, num_samples, seed=seed, length=length,
                           start_price=start_price, normalized=normalized, interpolate=interpolate,
                           interp_steps=interp_steps, temperature=temperature, regime=regime)
    if output is not None:
        write_output(frame, output)
    return frame


def _check_out(out: Path | None, *, resume: bool, overwrite: bool, model: str) -> None:
    """Refuse before any work: resuming nothing, replacing a checkpoint unasked, or writing into a foreign dir."""
    if out is None:
        if resume:
            raise ConfigError("--resume needs --out, the checkpoint directory to continue")
        return
    if resume:
        if not is_checkpoint(out):
            raise ModelError(f"no checkpoint in {out} to resume; train without --resume first")
        return
    if is_checkpoint(out):
        if not overwrite:
            raise ModelError(f"{out} already holds a checkpoint; pass --resume to continue it, --overwrite to "
                             f"replace it, or choose another --out")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelError(f"{out} exists and is not a marketsynth checkpoint; choose another --out")


def _check_same_settings(loaded: Checkpoint, name: str, config: dict[str, Any]) -> None:
    if loaded.model.name != name:
        raise ModelError(f"{loaded.path} holds a {loaded.model.name} checkpoint, not {name}; resume it with "
                         f"--model {loaded.model.name}")
    saved = json.loads(json.dumps(loaded.model.config.to_dict()))
    differing = [k for k, v in json.loads(json.dumps(config)).items() if k in saved and saved[k] != v]
    unknown = [k for k in config if k not in saved]
    if unknown:
        raise ModelError(f"unknown setting(s) {', '.join(unknown)} for {name}")
    if differing:
        shown = ", ".join(f"{k}={config[k]!r} (checkpoint: {saved[k]!r})" for k in differing)
        raise ModelError(f"--resume continues the checkpoint's settings, but {shown}; drop those options or "
                         f"train into a new --out")
