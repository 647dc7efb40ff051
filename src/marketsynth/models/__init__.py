"""Generative models of candle windows. ``registry.MODELS`` maps a name to its class; ``base`` is the interface
(hooks, fit, sample), ``capabilities`` the mixins (conditional, likelihood, temperature), ``data`` what a model
trains on."""
