"""Test helpers that ship with the package: a fake exchange server for tests, demos and offline work.

Names are imported on first use, so ``python -m marketsynth.testing.fake_exchange`` runs the module cleanly.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "FakeExchange": "fake_exchange",
    "RecordedRequest": "fake_exchange",
    "FAULT_KINDS": "fake_market",
    "FakeMarket": "fake_market",
    "Faults": "fake_market",
    "MissingBars": "fake_market",
    "read_kline_csv": "fake_market",
    "resample_bars": "fake_market",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
