"""Exchange sources: pull closed OHLCV candles page by page from Bybit v5 or Binance USDⓈ-M futures.

>>> with get_source("bybit") as source:                              # doctest: +SKIP
...     for page in source.fetch_bars("BTCUSDT", "1h", start, end):
...         store.write_bars("BTCUSDT", "1h", page)
"""

from __future__ import annotations

from marketsynth.data.exchanges.base import ExchangeSource
from marketsynth.data.exchanges.binance import BinanceSource
from marketsynth.data.exchanges.bybit import BybitSource
from marketsynth.errors import ConfigError

EXCHANGES: tuple[str, ...] = ("bybit", "binance")

_SOURCES: dict[str, type[ExchangeSource]] = {"bybit": BybitSource, "binance": BinanceSource}


def get_source(name: str, **kwargs) -> ExchangeSource:
    """A new source for exchange ``name``; keyword arguments go to ``ExchangeSource.__init__``."""
    key = str(name).strip().lower()
    if key not in _SOURCES:
        raise ConfigError(f"unknown exchange '{name}'; use bybit or binance")
    return _SOURCES[key](**kwargs)


__all__ = ["EXCHANGES", "BinanceSource", "BybitSource", "ExchangeSource", "get_source"]
