"""Brokers: the one interface (``base``) and the exchange order adapters (``bybit``, ``binance``).

    broker = exchange_broker("bybit")  # keys from MARKETSYNTH_BYBIT_API_KEY / _API_SECRET
    state = broker.place(OrderRequest(client_order_id("sma", "BTCUSDT", bar_close, 0), "BTCUSDT", "buy", 0.01))
"""

from __future__ import annotations

from pathlib import Path

from marketsynth.errors import ConfigError
from marketsynth.trading.brokers.base import (
    FINAL_STATUSES,
    ORDER_STATUSES,
    Balance,
    Broker,
    Instrument,
    OrderRequest,
    OrderState,
    Position,
    client_order_id,
)
from marketsynth.trading.brokers.binance import BinanceBroker
from marketsynth.trading.brokers.bybit import BybitBroker
from marketsynth.trading.brokers.credentials import Credentials, load_credentials
from marketsynth.trading.brokers.exchange import ExchangeBroker

EXCHANGE_BROKERS: dict[str, type[ExchangeBroker]] = {"bybit": BybitBroker, "binance": BinanceBroker}

__all__ = [
    "EXCHANGE_BROKERS", "FINAL_STATUSES", "ORDER_STATUSES", "Balance", "BinanceBroker", "Broker", "BybitBroker",
    "Credentials", "ExchangeBroker", "Instrument", "OrderRequest", "OrderState", "Position", "client_order_id",
    "exchange_broker", "load_credentials",
]


def exchange_broker(exchange: str, *, credentials: Credentials | None = None,
                    secrets_file: str | Path | None = None, **options) -> ExchangeBroker:
    """The order adapter for ``exchange``; keys from ``credentials``, else ``secrets_file``, else the environment.
    ``options`` go to the adapter (``base_url``, ``recv_window_ms``, ``clock``, ``sleep``, ``transport``...)."""
    cls = EXCHANGE_BROKERS.get(exchange)
    if cls is None:
        raise ConfigError(f"no order adapter for exchange {exchange!r}; use {' or '.join(EXCHANGE_BROKERS)}")
    if credentials is None:
        credentials = load_credentials(exchange, secrets_file=secrets_file)
    return cls(credentials, **options)
