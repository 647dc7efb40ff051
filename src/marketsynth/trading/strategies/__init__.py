"""The explicit name -> class table of strategies (a new strategy adds one line to ``_TABLE``).

Entries name a module and a class; the module is imported on first use, so a backtest of ``sma-crossover`` does
not pay for torch, which the learned strategies import. A listed module that does not exist (yet) is left out.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator, Mapping
from typing import Any

from marketsynth.errors import ConfigError, did_you_mean
from marketsynth.trading.strategy import Strategy

_TABLE: dict[str, tuple[str, str]] = {
    "buy-and-hold": ("marketsynth.trading.strategies.buy_hold", "BuyAndHold"),
    "sma-crossover": ("marketsynth.trading.strategies.sma", "SmaCrossover"),
    "glow": ("marketsynth.trading.strategies.glow", "GlowStrategy"),
    "gbm": ("marketsynth.trading.ml", "GbmStrategy"),
    "ensemble": ("marketsynth.trading.ml", "EnsembleStrategy"),
}


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


class _Registry(Mapping[str, type[Strategy]]):
    """A read-only mapping name -> strategy class that imports each module when its class is first asked for."""

    def __init__(self, table: dict[str, tuple[str, str]]):
        self._table = {name: spec for name, spec in table.items() if _exists(spec[0])}

    def __getitem__(self, name: str) -> type[Strategy]:
        module, attribute = self._table[name]
        cls = getattr(importlib.import_module(module), attribute)
        if cls.name != name:
            raise TypeError(f"{module}.{attribute}.name is '{cls.name}' but it is registered as '{name}'")
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)


STRATEGIES: Mapping[str, type[Strategy]] = _Registry(_TABLE)


def strategy_names() -> list[str]:
    return list(STRATEGIES)


def get_strategy_class(name: str) -> type[Strategy]:
    """The class registered as ``name``; a ConfigError with a suggestion otherwise."""
    key = str(name).strip().lower()
    if key not in STRATEGIES:
        hint = did_you_mean(key, STRATEGIES)
        raise ConfigError(f"unknown strategy '{name}'{hint}; choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[key]


def create_strategy(name: str, params: dict[str, Any] | None = None) -> Strategy:
    """Build a registered strategy; unknown parameters are a ConfigError with a did-you-mean."""
    return get_strategy_class(name)(**(params or {}))
