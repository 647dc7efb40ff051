"""The explicit name -> class table of strategies (a new strategy adds one line here)."""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from marketsynth.errors import ConfigError
from marketsynth.trading.ml import EnsembleStrategy, GbmStrategy
from marketsynth.trading.strategies.buy_hold import BuyAndHold
from marketsynth.trading.strategies.sma import SmaCrossover
from marketsynth.trading.strategy import Strategy


def _optional(module: str, attribute: str) -> type[Strategy] | None:
    """A strategy from a module that may not be written yet; an error *inside* an existing module still raises."""
    try:
        return getattr(importlib.import_module(f"marketsynth.trading.strategies.{module}"), attribute)
    except ModuleNotFoundError as exc:
        if exc.name != f"marketsynth.trading.strategies.{module}":
            raise
        return None


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (BuyAndHold, SmaCrossover, _optional("glow", "GlowStrategy"), GbmStrategy, EnsembleStrategy)
    if cls is not None
}


def strategy_names() -> list[str]:
    return list(STRATEGIES)


def get_strategy_class(name: str) -> type[Strategy]:
    """The class registered as ``name``; a ConfigError with a suggestion otherwise."""
    cls = STRATEGIES.get(str(name).strip().lower())
    if cls is None:
        close = difflib.get_close_matches(str(name).lower(), list(STRATEGIES), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"unknown strategy '{name}'{hint}; choose one of {', '.join(STRATEGIES)}")
    return cls


def create_strategy(name: str, params: dict[str, Any] | None = None) -> Strategy:
    """Build a registered strategy; unknown parameters are a ConfigError with a did-you-mean."""
    return get_strategy_class(name)(**(params or {}))
