"""marketsynth: collect real OHLCV candles, learn generative models of them, generate and evaluate synthetic markets."""

__version__ = "0.1.0"
