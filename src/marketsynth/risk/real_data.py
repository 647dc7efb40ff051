"""The real data a scenario run is compared with: the horizon returns of real candles, and the candles a
checkpoint was trained on, read again through the one loader (``data.load``) from the data source in its
meta.json."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from marketsynth.data.bars import time_breaks
from marketsynth.data.load import load, source_from_dict
from marketsynth.errors import ConfigError, MarketSynthError


def real_horizon_returns(bars: pd.DataFrame, horizon: int) -> np.ndarray:
    """Simple returns ``close[t + horizon] / close[t] - 1`` over every overlapping window without a time gap."""
    close = bars["close"].to_numpy(dtype=np.float64)
    if len(close) <= horizon:
        return np.zeros(0)
    starts = np.arange(len(close) - horizon)
    if "time" in bars.columns and len(bars) > 2:
        breaks = np.concatenate([[0], np.cumsum(time_breaks(bars["time"]))])  # run id of each bar
        starts = starts[breaks[starts] == breaks[starts + horizon]]
    return close[starts + horizon] / close[starts] - 1.0


def training_bars(meta: dict[str, Any]) -> tuple[pd.DataFrame | None, str]:
    """Re-read the real candles a checkpoint was trained on (the data source in its meta.json, through the one
    loader ``data.load``), or (None, why not)."""
    described = _legacy_source(meta)
    end = pd.Timestamp(meta["end"]) if meta.get("end") else None
    try:
        source = dataclasses.replace(source_from_dict(described), end=None)  # meta's end is the last bar: kept
    except (ConfigError, TypeError):
        return None, (f"the checkpoint records no re-readable data source ({described.get('kind') or 'none'}); "
                      f"pass --real FILE or --symbol/--interval")
    try:
        bars = load(source).bars
    except (MarketSynthError, OSError) as exc:
        return None, f"the training data could not be re-read ({exc}); pass --real FILE or --symbol/--interval"
    if end is not None:
        bars = bars[bars["time"] <= end].reset_index(drop=True)
    kind = getattr(source, "kind", "")
    where = {"file": lambda: f"training data {getattr(source, 'path', '')}",
             "store": lambda: f"training data {meta.get('exchange')} {meta.get('symbol')} {meta.get('interval')} "
                              f"from the store",
             "sample": lambda: f"training data sample {getattr(source, 'name', '')}"}.get(kind, lambda: "training data")
    return bars, f"{where()}, {len(bars)} bars"


def _legacy_source(meta: dict[str, Any]) -> dict[str, Any]:
    """The data source of a checkpoint's meta.json; checkpoints from before ``data.load`` said ``source``."""
    if "kind" in meta or meta.get("source") not in ("file", "store"):
        return meta
    if meta["source"] == "file":
        return {**meta, "kind": "file", "path": meta.get("file")}
    return {**meta, "kind": "store"}
