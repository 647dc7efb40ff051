"""What trading costs in a backtest: fees, slippage, funding and isolated margin.

Conventions (``marketsynth.trading.engine`` applies them; the README quotes them):

- **Fees** are a fraction of the filled notional, charged on every fill (both sides of a trade). The engine places
  market orders only (signal fills, stop-loss, take-profit and the close at the end), so it charges the **taker**
  fee; ``maker_fee`` is kept with the exchange's schedule for limit orders. Defaults are Binance USDⓈ-M's
  0.02 % maker / 0.05 % taker; ``Costs.bybit()`` has Bybit's 0.02 % / 0.055 %.
- **Slippage** ``slippage_bps`` moves every market fill against the trader: a buy fills at
  ``price × (1 + bps / 10 000)``, a sell at ``price × (1 − bps / 10 000)``. Liquidations fill at the liquidation
  price without it (the exchange takes the position over).
- **Funding** (perpetuals) is paid at funding times on the position held across them, on the notional at that
  time's price: ``payment = quantity × price × rate`` (signed quantity), so a long pays a positive rate and a
  short receives it. The input is ``None`` (spot, or ignore funding), a constant rate per 8 h charged at 00:00,
  08:00 and 16:00 UTC, or a ``pd.Series`` of rates indexed by funding time (what ``read_funding`` returns; its own
  times are used, so 4 h symbols work). ``funding_events`` turns that into bar positions; see it for the timing.
- **Isolated margin.** A position of ``q`` units at average entry price ``E`` with leverage ``L`` locks the margin
  ``M = |q| × E / L`` from the wallet; the liquidation price is where the position's equity ``M + q (P − E)``
  equals the maintenance margin ``mmr × |q| × P`` (Binance's isolated formula with a maintenance amount of 0):

  - long: ``P_liq = (E − M / q) / (1 − mmr)``  (= ``E (1 − 1/L) / (1 − mmr)`` right after entry)
  - short: ``P_liq = (E + M / |q|) / (1 + mmr)``  (= ``E (1 + 1/L) / (1 + mmr)``)

  Funding is paid out of (or into) the position's margin, so it moves the liquidation price. At liquidation the
  position closes at ``P_liq`` (or at the open when the bar gaps through it), a liquidation fee of
  ``liquidation_fee × notional`` is charged, and the loss including that fee is capped at the position's margin:
  the rest of the wallet is untouched and equity never goes below 0. With ``L = 1`` a long's liquidation price is
  0 (never reached) and a short is liquidated when the price roughly doubles.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from marketsynth.errors import ConfigError, DataError

FUNDING_HOURS = (0, 8, 16)
FUNDING_INTERVAL = pd.Timedelta(hours=8)


@dataclass(frozen=True)
class Costs:
    """Per-side fees (fractions of notional), slippage in basis points, maintenance-margin rate, liquidation fee."""

    maker_fee: float = 0.0002
    taker_fee: float = 0.0005
    slippage_bps: float = 0.0
    maintenance_margin: float = 0.004  # Binance BTCUSDT's first tier (0.4 %); Bybit's is 0.5 %
    liquidation_fee: float = 0.0125  # an assumption (Binance's clearance fee was 1.25 %); set your exchange's

    def __post_init__(self) -> None:
        for name in ("maker_fee", "taker_fee", "slippage_bps", "maintenance_margin", "liquidation_fee"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"{name} must be a number of 0 or more, got {value!r}")
        if self.taker_fee >= 0.1 or self.maker_fee >= 0.1:
            raise ConfigError(f"fees are fractions of notional (0.0005 = 0.05 %), got maker {self.maker_fee}, "
                              f"taker {self.taker_fee}")
        if self.slippage_bps >= 10_000:
            raise ConfigError(f"slippage is in basis points (5 = 0.05 %), got {self.slippage_bps}")
        if self.maintenance_margin >= 1:
            raise ConfigError(f"maintenance_margin is a fraction of notional (0.004 = 0.4 %), got "
                              f"{self.maintenance_margin}")

    @classmethod
    def binance(cls, **overrides) -> Costs:
        """Binance USDⓈ-M futures, regular tier: 0.02 % maker, 0.05 % taker, 0.4 % maintenance margin."""
        return cls(**{"maker_fee": 0.0002, "taker_fee": 0.0005, "maintenance_margin": 0.004, **overrides})

    @classmethod
    def bybit(cls, **overrides) -> Costs:
        """Bybit USDT perpetuals, regular tier: 0.02 % maker, 0.055 % taker, 0.5 % maintenance margin."""
        return cls(**{"maker_fee": 0.0002, "taker_fee": 0.00055, "maintenance_margin": 0.005, **overrides})

    @classmethod
    def zero(cls) -> Costs:
        """No fees, slippage or liquidation fee (maintenance margin still applies to leveraged positions)."""
        return cls(maker_fee=0.0, taker_fee=0.0, slippage_bps=0.0, liquidation_fee=0.0)

    @classmethod
    def preset(cls, exchange: str, **overrides) -> Costs:
        presets = {"binance": cls.binance, "bybit": cls.bybit}
        if exchange not in presets:
            raise ConfigError(f"no cost preset for exchange '{exchange}'; choose one of {', '.join(presets)}")
        return presets[exchange](**overrides)

    @property
    def slippage(self) -> float:
        """Slippage as a fraction of price."""
        return self.slippage_bps / 10_000.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def liquidation_price(entry: float, quantity: float, margin: float, maintenance_margin: float) -> float:
    """Isolated-margin liquidation price of ``quantity`` units (signed) at average entry ``entry`` holding
    ``margin``; see the module docstring. May be ≤ 0 for a long (it is then never reached)."""
    if quantity > 0:
        return (entry - margin / quantity) / (1.0 - maintenance_margin)
    return (entry + margin / -quantity) / (1.0 + maintenance_margin)


def funding_events(times: np.ndarray, funding) -> tuple[np.ndarray, np.ndarray]:
    """Funding as ``(bar, rate)`` arrays: the summed rate charged at the open of each listed bar.

    ``times`` are the bars' open times (``datetime64``, UTC). A funding time ``T`` is charged at the first bar whose
    open time is at or after ``T``, on the position held into that bar (before that bar's open fill), at that bar's
    open price. For bars of 8 h or shorter aligned with 00/08/16 UTC that is exactly ``T``; with longer bars a
    funding time inside a bar is charged at the next bar's open on the position held through the bar. Funding
    times at or before the first bar's open or after the last bar's open are not charged.
    """
    times = np.asarray(times).astype("datetime64[us]")
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0))
    if funding is None or len(times) < 2:
        return empty
    if isinstance(funding, pd.Series):
        stamps, rates = _series_funding(funding, times)
    elif isinstance(funding, int | float) and not isinstance(funding, bool):
        if not math.isfinite(funding):
            raise ConfigError(f"the funding rate must be a finite number per 8 h (0.0001 = 0.01 %), got {funding}")
        if funding == 0:
            return empty
        start = pd.Timestamp(times[0]).floor(FUNDING_INTERVAL)
        grid = pd.date_range(start, pd.Timestamp(times[-1]), freq=FUNDING_INTERVAL).to_numpy("datetime64[us]")
        stamps = grid[(grid > times[0]) & (grid <= times[-1])]
        rates = np.full(len(stamps), float(funding))
    else:
        raise ConfigError(f"funding must be None, a rate per 8 h or a pandas Series of rates indexed by time, "
                          f"got {type(funding).__name__}")
    bars = np.searchsorted(times, stamps, side="left")
    unique, first = np.unique(bars, return_index=True)
    return unique.astype(np.int64), np.add.reduceat(rates, first) if len(rates) else np.zeros(0)


def _series_funding(series: pd.Series, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(series.index, pd.DatetimeIndex):
        raise DataError("a funding series must be indexed by funding time (a DatetimeIndex)")
    index = series.index.tz_localize("UTC") if series.index.tz is None else series.index.tz_convert("UTC")
    values = pd.to_numeric(pd.Series(series.to_numpy(), index=index), errors="coerce").sort_index()
    if values.isna().any():
        warnings.warn(f"funding series: {int(values.isna().sum())} missing rate(s) dropped (no funding charged "
                      f"at those times)", stacklevel=3)
        values = values.dropna()
    stamps = values.index.tz_localize(None).to_numpy("datetime64[us]")
    inside = (stamps > times[0]) & (stamps <= times[-1])
    if len(times) > 1 and not inside.any():
        raise DataError(f"the funding series ({_span(stamps)}) has no funding time within the bars "
                        f"({_span(times)}); fetch funding for that period or pass a constant rate")
    covered_from = stamps[inside][0] - np.timedelta64(8, "h")
    covered_to = stamps[inside][-1] + np.timedelta64(8, "h")
    if covered_from > times[0] or covered_to < times[-1]:
        warnings.warn(f"the funding series covers {_span(stamps[inside])} but the bars run {_span(times)}; "
                      f"no funding is charged outside the series", stacklevel=3)
    return stamps[inside], values.to_numpy(dtype="float64")[inside]


def _span(stamps: np.ndarray) -> str:
    if len(stamps) == 0:
        return "empty"
    return f"{pd.Timestamp(stamps[0]):%Y-%m-%d %H:%M} to {pd.Timestamp(stamps[-1]):%Y-%m-%d %H:%M} UTC"
