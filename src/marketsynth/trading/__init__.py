"""Trading: strategies, the backtest engine, costs, performance metrics and the tearsheet.

``from marketsynth.trading import backtest, Costs`` works; the engine is imported on first use of those names.
"""

from marketsynth.trading.strategy import FLAT, History, LookAheadError, Signal, Strategy

_LAZY = {
    "backtest": "marketsynth.trading.engine", "backtest_paths": "marketsynth.trading.engine",
    "walk_forward_backtest": "marketsynth.trading.engine", "BacktestResult": "marketsynth.trading.engine",
    "Costs": "marketsynth.trading.costs",
}

__all__ = ["FLAT", "History", "LookAheadError", "Signal", "Strategy", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'marketsynth.trading' has no attribute '{name}'")
