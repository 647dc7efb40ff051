"""Candles <-> model features (``encoding``) and the windows models and metrics are cut into (``windows``)."""

from marketsynth.representation.encoding import (
    OHLCV,
    QUANTILE_SCALINGS,
    REPRESENTATIONS,
    SCALINGS,
    LogReturnLevelRepresentation,
    LogReturnRepresentation,
    MinMaxOHLCV,
    Representation,
    candles_frame,
    follows_previous_bar,
    make_representation,
    representation_from_dict,
    valid_ohlcv,
)
from marketsynth.representation.windows import (
    Windows,
    create_sequences,
    take_windows,
    window_starts,
    windows_from_bars,
)

__all__ = [
    "OHLCV", "QUANTILE_SCALINGS", "REPRESENTATIONS", "SCALINGS", "LogReturnLevelRepresentation",
    "LogReturnRepresentation", "MinMaxOHLCV",
    "Representation",
    "Windows", "candles_frame", "create_sequences", "follows_previous_bar",
    "make_representation", "representation_from_dict", "take_windows", "valid_ohlcv", "window_starts",
    "windows_from_bars",
]
