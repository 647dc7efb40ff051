"""Offline sample datasets: real OHLCV candles that ship with a dependency, so the main job runs without a network.

The ``arch`` package (a marketsynth dependency) ships two daily index histories, 1999-01-04 to 2018-12-31
(5,031 trading days each): ``sp500`` (S&P 500) and ``nasdaq`` (NASDAQ Composite). Each row is one trading
day with Open, High, Low, Close and Volume; the time is the day at 00:00 UTC.

Trading days skip weekends and holidays, so consecutive bars are 1 to 4 calendar days apart (7 around the
2001 closure). ``Sample.adjacent_within`` says how far apart two bars may be and still count as neighbours
when windows are cut (``MarketData.adjacent``): market closures are not missing
data, and with the 1-day rule no window of 24 trading days would exist at all.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import pandas as pd

from marketsynth.data.bars import as_bars
from marketsynth.errors import ConfigError, DataError, did_you_mean


@dataclass(frozen=True)
class Sample:
    name: str
    description: str
    module: str  # an ``arch.data`` module with ``load() -> DataFrame``
    interval: str = "1d"
    adjacent_within: str = "1w"  # the longest step between bars that are still neighbours (market closures)


SAMPLES: dict[str, Sample] = {
    "sp500": Sample("sp500", "S&P 500 index, daily, 1999-2018 (shipped with the arch package)", "arch.data.sp500"),
    "nasdaq": Sample("nasdaq", "NASDAQ Composite index, daily, 1999-2018 (shipped with the arch package)",
                     "arch.data.nasdaq"),
}


def sample_names() -> list[str]:
    return list(SAMPLES)


def get_sample(name: str) -> Sample:
    """The sample called ``name``; a one-line ConfigError listing the names otherwise."""
    sample = SAMPLES.get(str(name).strip().lower())
    if sample is None:
        hint = did_you_mean(name, SAMPLES)
        raise ConfigError(f"unknown sample '{name}'{hint}; choose one of {', '.join(SAMPLES)}")
    return sample


def load_sample(name: str) -> pd.DataFrame:
    """The sample's bars frame (``time, open, high, low, close, volume``); read it through ``data.load``."""
    sample = get_sample(name)
    try:
        raw = importlib.import_module(sample.module).load()
    except (ImportError, OSError) as exc:
        raise DataError(f"sample '{sample.name}' cannot be loaded from {sample.module} ({exc}); "
                        f"reinstall arch, or use --csv FILE") from exc
    frame = pd.DataFrame({
        "time": pd.to_datetime(raw.index).tz_localize("UTC"),
        **{column.lower(): raw[column].to_numpy(dtype="float64") for column in ("Open", "High", "Low", "Close")},
        "volume": raw["Volume"].to_numpy(dtype="float64"),
    })
    return as_bars(frame, source=f"sample {sample.name}")
