"""Extra training material for a fold: paths from a generator trained on the fold, or a null augmentation.

Both kinds come out the same way, so a strategy cannot tell them apart by their shape: ``count`` bars frames of
``length`` bars each, with times continuing the fold's training period (the first synthetic bar is one bar after
the last training bar) and prices anchored at the last training close.

- ``generator_paths``: a registered generator (``models.registry``) fitted on the fold's training bars only, through
  the one training path (``training.fit_on_bars``), sampled through ``generation.generate_frame`` (long paths:
  recurrent models run one state, window models chain windows; see ``marketsynth.generation``).
- ``null_paths``: a **block bootstrap** of the same training bars: blocks of ``block`` consecutive bars, drawn with
  replacement from inside the gap-free runs (``representation.window_starts``: the one window cutter), as their
  scale-free per-bar features (``LogReturnRepresentation``: gap, return, wicks, volume) and chained into paths,
  decoded from the last training close. Same count and length as the generator's paths: it adds "more samples" of
  exactly the real training distribution (locally, up to ``block`` bars), so an augmentation that only helps
  because there are more samples helps as much with it; what a generator adds beyond it is "better samples".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from marketsynth.data.bars import BAR_COLUMNS
from marketsynth.errors import ConfigError, DataError
from marketsynth.generation import generate_frame
from marketsynth.progress import Progress
from marketsynth.representation import make_representation, take_windows, window_starts
from marketsynth.training.from_bars import fit_on_bars

NULL_BLOCK = 24  # bars per bootstrap block: a day of 1h bars keeps intraday volatility clustering


@dataclass
class GeneratorRun:
    """A generator fitted on one fold: its name, the bars it saw (first/last time, count) and what it made."""

    name: str
    seed: int
    train_start: pd.Timestamp
    train_end: pd.Timestamp  # the last bar the generator trained on
    train_bars: int
    items: str
    epochs: int
    seconds: float
    model: Any = None
    representation: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"generator": self.name, "seed": self.seed, "train_start": self.train_start.isoformat(),
                "train_end": self.train_end.isoformat(), "train_bars": self.train_bars, "items": self.items,
                "epochs": self.epochs, "seconds": round(self.seconds, 3)}


def path_count(ratio: float, train_bars: int, length: int) -> int:
    """Paths of ``length`` bars that hold about ``ratio`` times the training bars (at least 1)."""
    if not (math.isfinite(ratio) and ratio > 0):
        raise ConfigError(f"--ratio must be positive (2 = twice as many synthetic bars as real training bars), "
                          f"got {ratio}")
    return max(1, int(round(ratio * train_bars / length)))


def fit_generator(name: str, bars: pd.DataFrame, *, timeframe: str | None, seed: int, epochs: int | None = None,
                  config: dict[str, Any] | None = None, device: str = "cpu",
                  progress: Progress | None = None) -> GeneratorRun:
    """Fit generator ``name`` on ``bars`` (a fold's training bars, nothing else)."""
    import time

    began = time.perf_counter()
    fitted = fit_on_bars(name, bars, timeframe=timeframe, config=config, epochs=epochs, seed=seed, device=device,
                         progress=progress)
    if not fitted.model.models_candles or fitted.representation is None:
        raise ConfigError(f"generator {name} models per-bar features, not candles, so it cannot make paths for a "
                          f"strategy; use a candle model such as autoregressive or garch")
    times = bars["time"]
    return GeneratorRun(name, seed, times.iat[0], times.iat[-1], len(bars), fitted.items,
                        len(fitted.history.rows), time.perf_counter() - began, fitted.model, fitted.representation)


def generator_paths(run: GeneratorRun, count: int, length: int, *, seed: int, start_price: float,
                    start_time: pd.Timestamp, step: pd.Timedelta, temperature: float | None = None,
                    regime: str | None = None) -> list[pd.DataFrame]:
    """``count`` bars frames of ``length`` bars sampled from a fitted generator (module docstring)."""
    frame = generate_frame(run.model, run.representation, count, seed=seed, length=length, start_price=start_price,
                           temperature=temperature, regime=regime)
    return frames_from_long(frame, start_time, step)


def null_paths(bars: pd.DataFrame, count: int, length: int, *, seed: int, start_time: pd.Timestamp,
               step: pd.Timedelta, timeframe: str | None = None, block: int = NULL_BLOCK) -> list[pd.DataFrame]:
    """``count`` block-bootstrap paths of ``length`` bars from ``bars`` (module docstring)."""
    if block < 1:
        raise ConfigError(f"the bootstrap block must be at least 1 bar, got {block}")
    rep = make_representation("log-returns").fit(bars)
    starts = window_starts(bars["time"], block, step=timeframe)
    if len(starts) == 0:
        raise DataError(f"{len(bars)} training bars hold no run of {block + 1} consecutive bars to bootstrap; use "
                        f"more data")
    features = rep.encode(bars)  # row i relative to close i - 1: a block with its anchor inside the run is exact
    rng = np.random.default_rng(seed)
    per_path = math.ceil(length / block)
    chosen = rng.choice(starts, size=(count, per_path))
    blocks = take_windows(features, chosen.reshape(-1), block)
    paths = blocks.reshape(count, per_path * block, features.shape[1])[:, :length]
    start_price = float(bars["close"].iat[-1])
    return frames_from_long(rep.decode_frames(paths, start_price), start_time, step)


def frames_from_long(frame: pd.DataFrame, start_time: pd.Timestamp, step: pd.Timedelta) -> list[pd.DataFrame]:
    """A long frame (``sample_id, timestep``, OHLCV) as one bars frame per sample, the first bar at
    ``start_time`` and one ``step`` apart."""
    frame = frame.sort_values(["sample_id", "timestep"], kind="stable")
    out = []
    for _, part in frame.groupby("sample_id", sort=True):
        times = pd.DatetimeIndex(start_time + step * part["timestep"].to_numpy()).as_unit("us")
        bars = pd.DataFrame({"time": times, **{c: part[c].to_numpy(dtype=np.float64) for c in BAR_COLUMNS[1:]}})
        out.append(bars)
    return out
