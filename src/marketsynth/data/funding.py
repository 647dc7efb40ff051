"""Funding rates of perpetual futures: the frame every part passes around and ``read_funding`` for backtests.

A *funding frame* has columns ``time`` (the funding time, tz-aware UTC, whole seconds) and ``rate`` (float64, the
fraction of the position's notional that longs pay shorts when positive), sorted by time and unique. Bybit and
Binance linear perpetuals fund every 8 h at 00:00, 08:00 and 16:00 UTC (some symbols more often); the stored
series holds whatever times the exchange reported. Times are floored to the second: Binance's ``fundingTime``
sometimes carries a few milliseconds past the hour.

    >>> rates = read_funding(store, "bybit", "BTCUSDT", "2023-01-01", "2023-02-01")   # doctest: +SKIP
    >>> rates.loc["2023-01-01 08:00+00:00"]                                          # doctest: +SKIP
    0.0001
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from marketsynth.data.bars import TIME_DTYPE
from marketsynth.errors import DataError

FUNDING_COLUMNS = ["time", "rate"]


class FundingStore(Protocol):
    """What ``read_funding`` needs of a store (every ``marketsynth.data.store.Store`` is one)."""

    url: str

    def read_funding(self, exchange: str, symbol: str, start=None, end=None) -> pd.DataFrame: ...


def empty_funding() -> pd.DataFrame:
    return pd.DataFrame({"time": pd.Series(dtype=TIME_DTYPE), "rate": pd.Series(dtype="float64")})


def as_funding(frame: pd.DataFrame, *, source: str = "funding rates") -> pd.DataFrame:
    """Coerce to a funding frame: UTC times floored to the second, float rates, sorted, last duplicate wins."""
    missing = [c for c in FUNDING_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{source} lacks column(s) {', '.join(missing)}; expected time, rate")
    if frame.empty:
        return empty_funding()
    times = frame["time"]
    if pd.api.types.is_numeric_dtype(times):
        times = pd.to_datetime(times.astype("int64"), unit="ms", utc=True)
    else:
        times = pd.to_datetime(times, utc=True)
    out = pd.DataFrame({"time": times.dt.floor("s").astype(TIME_DTYPE).to_numpy(),
                        "rate": pd.to_numeric(frame["rate"], errors="coerce").astype("float64").to_numpy()})
    if out["rate"].isna().any():
        raise DataError(f"{source} has {int(out['rate'].isna().sum())} unreadable funding rate(s)")
    out = out.sort_values("time", kind="stable").drop_duplicates("time", keep="last")
    return out.reset_index(drop=True)


def funding_from_rows(rows: list[tuple[int, object]], *, source: str = "exchange") -> pd.DataFrame:
    """Rows of ``(funding_time_ms, rate)`` (numbers or numeric strings), in any order."""
    if not rows:
        return empty_funding()
    array = np.asarray(rows, dtype=object)
    frame = pd.DataFrame({"time": pd.to_numeric(array[:, 0]).astype("int64"), "rate": pd.to_numeric(array[:, 1])})
    return as_funding(frame, source=source)


def read_funding(store: FundingStore, exchange: str, symbol: str, start=None, end=None) -> pd.Series:
    """Stored funding rates of ``exchange``/``symbol`` with funding time in [start, end): a float Series named
    ``funding_rate`` on a UTC ``DatetimeIndex`` named ``time`` (one value per funding time, ascending).

    Positive rates mean longs pay shorts ``rate × notional`` at that time. Raises DataError when the store holds
    no funding rates for the pair at all (fetch them with ``marketsynth fetch ... --funding``); a range the
    stored series does not reach gives an empty Series.
    """
    frame = store.read_funding(exchange, symbol, start, end)
    if frame.empty and store.read_funding(exchange, symbol).empty:
        raise DataError(
            f"the store {store.url} has no {exchange.lower()} {symbol.upper()} funding rates; fetch them with "
            f"'marketsynth fetch --exchange {exchange.lower()} --symbol {symbol.upper()} --interval 1h --funding "
            "--start ... --end ...'"
        )
    index = pd.DatetimeIndex(frame["time"], name="time")
    return pd.Series(frame["rate"].to_numpy(), index=index, name="funding_rate", dtype="float64")
