"""Generative models of candle windows. ``registry.MODELS`` maps a name to its class."""
