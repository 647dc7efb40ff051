"""Learned trading strategies: ``gbm`` (gradient-boosted trees) and ``ensemble`` (LSTM + CNN + DNN, weighted vote).

Both predict the direction of the close ``horizon`` bars ahead from bars up to the current one, turn the
probability into a target position (``base``), are fitted walk-forward by the backtester (``learns = True``;
``fit(bars, extra=None)`` also takes extra training frames such as synthetic paths), report
``direction_accuracy(bars)``, and save/load as JSON + safetensors (``persist``), never pickle.

Modules: ``samples`` (features, labels, windows), ``base`` (the shared strategy part), ``trees`` (boosted trees as
plain arrays), ``nets`` (the torch heads and their training), ``persist`` (the saved folder), ``gbm``, ``ensemble``.
"""

from marketsynth.trading.ml.base import DirectionStrategy
from marketsynth.trading.ml.ensemble import EnsembleStrategy
from marketsynth.trading.ml.gbm import GbmStrategy

__all__ = ["DirectionStrategy", "EnsembleStrategy", "GbmStrategy"]
