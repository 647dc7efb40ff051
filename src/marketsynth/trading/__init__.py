"""Trading: strategies, the backtest engine, costs, performance metrics and the tearsheet."""

from marketsynth.trading.strategy import FLAT, History, LookAheadError, Signal, Strategy

__all__ = ["FLAT", "History", "LookAheadError", "Signal", "Strategy"]
