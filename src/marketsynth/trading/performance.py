"""Backtest performance metrics: pure functions over an equity curve, its daily returns and a trades table.

Conventions (the README repeats them; every function's docstring names its formula):

* **Daily returns.** Ratios (Sharpe, Sortino, volatility, VaR, PSR) use daily returns: intraday equity is sampled
  at UTC day ends (``daily_returns``). Drawdowns use the equity at its own resolution, so an intraday dip counts.
* **Periods per year** ``P`` follow the data: 365 when the bars include Saturdays or Sundays (crypto trades every
  day), 252 otherwise (``periods_per_year``); every function takes an explicit value too.
* **CAGR** runs over calendar years of 365.25 days between the first and last equity stamps.
* **Risk-free rate** ``risk_free`` is an annual rate; a day earns ``rf_d = (1 + risk_free) ** (1 / P) - 1``.
* **Signs.** Returns are fractions (0.02 = +2%). ``max_drawdown``, VaR and CVaR are *positive* loss fractions.
  Durations are in days (float).
* **Undefined is None.** A ratio that has no finite value (flat equity, no losing day, no trades) is ``None``,
  never NaN or infinity, so ``summary`` is JSON-safe as it is.

Trades are a frame with columns ``entry_time``, ``exit_time``, ``pnl`` (account currency, after costs) and
optionally ``return`` (the trade's return as a fraction); a missing ``exit_time`` means the trade was still open at
the end and counts until the last equity stamp.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from marketsynth.errors import ConfigError, DataError
from marketsynth.risk.measures import historical_cvar, historical_var

DAYS_PER_YEAR = 365.25
EULER_GAMMA = 0.5772156649015329
VAR_LEVEL = 0.95
_TINY = 1e-12  # a daily standard deviation below this is a flat curve (float noise from pct_change)
_DAY = pd.Timedelta(days=1)

Stats = dict[str, float | int | str | None]


# ---------------------------------------------------------------------------------------------- inputs


def as_equity(equity) -> pd.Series:
    """The equity curve as a float Series on a sorted UTC DatetimeIndex.

    Accepts a Series indexed by time, a frame with ``time`` and ``equity`` columns, or an object with such an
    ``.equity`` attribute (a backtest result). Naive times are taken as UTC. A curve that reaches zero or below is
    cut at that bar and set to 0 there (ruin: nothing compounds after it).
    """
    if not isinstance(equity, pd.Series | pd.DataFrame) and hasattr(equity, "equity"):
        equity = equity.equity
    if isinstance(equity, pd.DataFrame):
        missing = {"time", "equity"} - set(equity.columns)
        if missing:
            raise DataError(f"equity frame lacks column(s) {sorted(missing)}; pass columns 'time' and 'equity'")
        equity = pd.Series(equity["equity"].to_numpy(), index=pd.DatetimeIndex(pd.to_datetime(equity["time"])))
    if not isinstance(equity, pd.Series):
        raise DataError(f"equity must be a pandas Series indexed by time, got {type(equity).__name__}")
    if not isinstance(equity.index, pd.DatetimeIndex):
        raise DataError("equity must be indexed by time (a DatetimeIndex); set the bar times as its index")
    if len(equity) == 0:
        raise DataError("the equity curve is empty; run the backtest on at least one bar")
    index = equity.index.tz_localize("UTC") if equity.index.tz is None else equity.index.tz_convert("UTC")
    values = pd.to_numeric(pd.Series(equity.to_numpy(), index=index), errors="coerce").astype(float)
    if not np.isfinite(values.to_numpy()).all():
        raise DataError(f"the equity curve has {int((~np.isfinite(values.to_numpy())).sum())} NaN or infinite "
                        f"value(s); fill or drop those bars first")
    if index.has_duplicates:
        raise DataError(f"the equity curve has {int(index.duplicated().sum())} duplicate time(s); keep one per bar")
    values = values.sort_index()
    if values.iloc[0] <= 0:
        raise DataError(f"the equity curve starts at {values.iloc[0]:g}; it must start with positive capital")
    ruined = np.flatnonzero(values.to_numpy() <= 0)
    if len(ruined):
        values = values.iloc[: ruined[0] + 1].copy()
        values.iloc[-1] = 0.0
    return values


def as_trades(trades, *, end: pd.Timestamp | None = None) -> pd.DataFrame:
    """The trades table with UTC ``entry_time``/``exit_time`` and float ``pnl`` (and ``return`` when given).

    ``None`` is no trades. An open trade (missing ``exit_time``) is closed at ``end`` when one is given.
    """
    if trades is None:
        return pd.DataFrame({"entry_time": pd.Series([], dtype="datetime64[ns, UTC]"),
                             "exit_time": pd.Series([], dtype="datetime64[ns, UTC]"),
                             "pnl": pd.Series([], dtype=float)})
    if not isinstance(trades, pd.DataFrame):
        raise DataError(f"trades must be a pandas DataFrame, got {type(trades).__name__}")
    missing = {"entry_time", "exit_time", "pnl"} - set(trades.columns)
    if missing:
        raise DataError(f"trades lack column(s) {sorted(missing)}; pass entry_time, exit_time, pnl (and return)")
    out = pd.DataFrame({"entry_time": pd.to_datetime(trades["entry_time"], utc=True).dt.as_unit("ns"),
                        "exit_time": pd.to_datetime(trades["exit_time"], utc=True).dt.as_unit("ns"),
                        "pnl": pd.to_numeric(trades["pnl"], errors="coerce").astype(float)})
    if "return" in trades.columns:
        out["return"] = pd.to_numeric(trades["return"], errors="coerce").astype(float)
    if not np.isfinite(out["pnl"].to_numpy()).all():
        raise DataError("some trades have a NaN or infinite pnl; every closed trade needs its profit or loss")
    if out["entry_time"].isna().any():
        raise DataError("some trades have no entry_time; every trade needs the time it was opened")
    if end is not None:
        out["exit_time"] = out["exit_time"].fillna(pd.Timestamp(end).tz_convert("UTC").as_unit("ns"))
    return out.reset_index(drop=True)


def _returns_array(returns) -> np.ndarray:
    array = np.asarray(returns, dtype=np.float64).ravel()
    if not np.isfinite(array).all():
        raise DataError(f"{int((~np.isfinite(array)).sum())} return(s) are NaN or infinite")
    return array


def _ppy(value) -> float:
    value = float(value)
    if not value > 0 or not math.isfinite(value):
        raise ConfigError(f"periods_per_year must be a positive number (365 or 252), got {value}")
    return value


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------- resampling


def daily_returns(equity) -> pd.Series:
    """Simple daily returns ``r_d = E_d / E_{d-1} - 1`` of the equity sampled at UTC day ends.

    ``E_d`` is the last equity value stamped within UTC day ``d`` (the index is the day, 00:00 UTC). Days without
    any bar (weekends of a stock, gaps) get no return; the next return spans them. The partial **first** day
    returns from the first equity value (the starting capital) to that day's last value; when the first day holds a
    single value that return is identically 0 and is left out, so daily bars give one return fewer than bars. The
    partial **last** day counts as a day, ending at its last value.
    """
    curve = as_equity(equity)
    days = curve.index.floor("D")
    closes = curve.groupby(days).last()
    if (days == days[0]).sum() > 1:
        closes = pd.concat([pd.Series([curve.iloc[0]], index=[days[0] - _DAY]), closes])
    out = closes.pct_change().iloc[1:]
    out.index.name = "day"
    return out.rename("return")


def periods_per_year(times, *, override: float | None = None) -> float:
    """Return periods per year: ``override`` when given, else 365 if any time falls on a Saturday or Sunday (UTC)
    — a market that trades every day — and 252 otherwise. A span shorter than a week may lack a weekend; pass
    ``override`` then."""
    if override is not None:
        return _ppy(override)
    index = pd.DatetimeIndex(pd.to_datetime(times, utc=True))
    return 365.0 if bool((index.day_of_week >= 5).any()) else 252.0


_infer_periods_per_year = periods_per_year  # ``summary`` has a keyword of the same name


# ---------------------------------------------------------------------------------------------- return metrics


def total_return(equity) -> float:
    """``E_end / E_start - 1`` over the whole curve."""
    curve = as_equity(equity)
    return float(curve.iloc[-1] / curve.iloc[0] - 1.0)


def cagr(equity) -> float | None:
    """Compound annual growth rate ``(E_end / E_start) ** (1 / Y) - 1`` with ``Y = (t_end - t_start) / 365.25``
    days (calendar time between the first and last stamps). -1 after ruin; None for a zero-length span or when the
    annualised figure overflows (a big return over a few days)."""
    curve = as_equity(equity)
    years = (curve.index[-1] - curve.index[0]) / _DAY / DAYS_PER_YEAR
    if years <= 0:
        return None
    growth = curve.iloc[-1] / curve.iloc[0]
    if growth <= 0:
        return -1.0
    exponent = math.log(growth) / years
    return None if exponent > 700 else math.expm1(exponent)


def annual_return(returns, periods_per_year: float) -> float | None:
    """Arithmetic annualised return ``mean(r_d) * P`` (the Sharpe numerator; above CAGR by about half the variance)."""
    array = _returns_array(returns)
    return float(array.mean() * _ppy(periods_per_year)) if len(array) else None


def annual_volatility(returns, periods_per_year: float) -> float | None:
    """Annualised volatility ``std(r_d, ddof=1) * sqrt(P)``; None with fewer than 2 returns."""
    array = _returns_array(returns)
    return float(array.std(ddof=1) * math.sqrt(_ppy(periods_per_year))) if len(array) >= 2 else None


def per_period_rate(risk_free: float, periods_per_year: float) -> float:
    """The per-period rate of an annual rate: ``(1 + risk_free) ** (1 / P) - 1``."""
    if not (float(risk_free) > -1 and math.isfinite(float(risk_free))):
        raise ConfigError(f"risk_free is an annual rate as a fraction (0.04 = 4%), got {risk_free}")
    return (1.0 + float(risk_free)) ** (1.0 / _ppy(periods_per_year)) - 1.0


def sharpe_ratio(returns, periods_per_year: float, risk_free: float = 0.0) -> float | None:
    """Annualised Sharpe ratio ``mean(x) / std(x, ddof=1) * sqrt(P)`` of the daily excess returns
    ``x = r_d - rf_d``. None with fewer than 2 returns or a flat curve (std below 1e-12)."""
    array = _returns_array(returns)
    if len(array) < 2:
        return None
    excess = array - per_period_rate(risk_free, periods_per_year)
    sd = excess.std(ddof=1)
    return None if sd < _TINY else float(excess.mean() / sd * math.sqrt(_ppy(periods_per_year)))


def sortino_ratio(returns, periods_per_year: float, risk_free: float = 0.0) -> float | None:
    """Annualised Sortino ratio ``mean(x) * P / (DD * sqrt(P))`` with the downside deviation
    ``DD = sqrt(mean(min(x, 0)^2))`` over *all* days (target = the risk-free rate). None with fewer than 2
    returns or when no day falls below the target (unbounded)."""
    array = _returns_array(returns)
    if len(array) < 2:
        return None
    ppy = _ppy(periods_per_year)
    excess = array - per_period_rate(risk_free, ppy)
    downside = math.sqrt(float(np.mean(np.minimum(excess, 0.0) ** 2)))
    return None if downside < _TINY else float(excess.mean() * ppy / (downside * math.sqrt(ppy)))


# ---------------------------------------------------------------------------------------------- drawdowns


def underwater(equity) -> pd.Series:
    """The drawdown curve ``E_t / max_{s<=t} E_s - 1`` (0 at a new high, negative below it), at bar resolution."""
    curve = as_equity(equity)
    return (curve / curve.cummax() - 1.0).rename("drawdown")


def max_drawdown(equity) -> float:
    """Largest peak-to-trough fall ``max_t (1 - E_t / max_{s<=t} E_s)`` as a positive fraction (0.25 = -25%),
    on the equity at its own resolution; the first value counts as a peak."""
    return float(max(0.0, -underwater(equity).min()))  # max: no -0.0 for a curve that never falls


def max_drawdown_duration(equity) -> float:
    """Longest time under water, in days: from a peak to the first later stamp back at or above it, or to the last
    stamp when the curve never recovers. 0 for a curve that never falls."""
    curve = as_equity(equity)
    values = curve.to_numpy()
    times = curve.index
    is_peak = values >= np.maximum.accumulate(values)
    starts = np.flatnonzero(is_peak)  # each peak opens a stretch that lasts until the next peak
    lengths = np.diff(np.append(starts, len(values)))
    longest = 0.0
    for start, length in zip(starts[lengths > 1], lengths[lengths > 1], strict=True):
        end = start + length if start + length < len(values) else len(values) - 1
        longest = max(longest, (times[end] - times[start]) / _DAY)
    return float(longest)


def calmar_ratio(equity) -> float | None:
    """``CAGR / max_drawdown`` (both over the whole curve); None without a drawdown or a CAGR."""
    growth, depth = cagr(equity), max_drawdown(equity)
    return None if growth is None or depth <= 0 else float(growth / depth)


# ---------------------------------------------------------------------------------------------- trade metrics


def n_trades(trades) -> int:
    """Number of trades (rows of the trades table)."""
    return len(as_trades(trades))


def win_rate(trades) -> float | None:
    """Share of trades with ``pnl > 0`` (break-even trades are not wins); None without trades."""
    pnl = as_trades(trades)["pnl"].to_numpy()
    return float((pnl > 0).mean()) if len(pnl) else None


def profit_factor(trades) -> float | None:
    """Gross profit over gross loss ``sum(pnl > 0) / |sum(pnl < 0)|``. None without trades and when no trade
    lost (the ratio would be infinite; the verdict says "no losing trade"); 0 when no trade won."""
    pnl = as_trades(trades)["pnl"].to_numpy()
    loss = -pnl[pnl < 0].sum()
    return None if len(pnl) == 0 or loss <= 0 else float(pnl[pnl > 0].sum() / loss)


def expectancy(trades) -> float | None:
    """Average profit per trade ``mean(pnl)`` in account currency; None without trades."""
    pnl = as_trades(trades)["pnl"].to_numpy()
    return float(pnl.mean()) if len(pnl) else None


def avg_trade_return(trades) -> float | None:
    """Average trade return ``mean(return)`` as a fraction; None without trades or a ``return`` column."""
    table = as_trades(trades)
    if "return" not in table or len(table) == 0:
        return None
    return _finite(table["return"].mean())


def sqn(trades) -> float | None:
    """Van Tharp's System Quality Number ``sqrt(N) * mean(pnl) / std(pnl, ddof=1)`` over all N trades (no cap
    at 100 trades); None with fewer than 2 trades or identical P&Ls."""
    pnl = as_trades(trades)["pnl"].to_numpy()
    if len(pnl) < 2:
        return None
    sd = pnl.std(ddof=1)
    return None if sd <= _TINY * max(1.0, abs(pnl.mean())) else float(math.sqrt(len(pnl)) * pnl.mean() / sd)


def avg_trade_duration(trades, *, end: pd.Timestamp | None = None) -> float | None:
    """Mean holding time ``mean(exit_time - entry_time)`` in days; open trades count until ``end``."""
    table = as_trades(trades, end=end).dropna(subset=["exit_time"])
    if len(table) == 0:
        return None
    return float(((table["exit_time"] - table["entry_time"]) / _DAY).mean())


def exposure_time(times, *, exposure=None, trades=None) -> float:
    """Share of bars in the market. With an ``exposure`` series (position value / equity, any sign): the share of
    its values that are not 0. Otherwise from the trades: the share of bar times ``t`` with
    ``entry_time <= t < exit_time`` for some trade (open trades run to the end). 0 without either."""
    if exposure is not None:
        values = np.asarray(exposure, dtype=np.float64)
        return float((np.abs(np.nan_to_num(values)) > _TINY).mean()) if len(values) else 0.0
    flags = in_market(times, trades)
    return float(flags.mean()) if len(flags) else 0.0


def in_market(times, trades) -> np.ndarray:
    """For each of the (sorted) ``times``: is some trade open, ``entry_time <= t < exit_time`` (an open trade runs
    to the end)."""
    index = pd.DatetimeIndex(pd.to_datetime(times, utc=True)).sort_values().as_unit("ns")
    table = as_trades(trades)
    if len(index) == 0 or len(table) == 0:
        return np.zeros(len(index), dtype=bool)
    first = index.searchsorted(table["entry_time"], side="left")
    stop = np.where(table["exit_time"].isna(), len(index), index.searchsorted(table["exit_time"], side="left"))
    marks = np.zeros(len(index) + 1)
    np.add.at(marks, first, 1)
    np.add.at(marks, stop, -1)
    return np.cumsum(marks[:-1]) > 0


# ---------------------------------------------------------------------------------------------- tail and significance


def value_at_risk(returns, level: float = VAR_LEVEL) -> float | None:
    """Historical one-day VaR as a positive loss fraction: the ``floor(n (1 - level)) + 1``-th largest daily loss
    (inverted-CDF quantile, ``marketsynth.risk.measures.historical_var``); None without returns."""
    array = _returns_array(returns)
    return historical_var(array, level) if len(array) else None


def conditional_value_at_risk(returns, level: float = VAR_LEVEL) -> float | None:
    """Historical one-day CVaR (expected shortfall) as a positive loss fraction: the mean loss of the worst
    ``n (1 - level)`` days, the boundary day counted fractionally (Acerbi–Tasche,
    ``marketsynth.risk.measures.historical_cvar``); None without returns."""
    array = _returns_array(returns)
    return historical_cvar(array, level) if len(array) else None


def return_moments(returns) -> tuple[float, float] | None:
    """(skewness, kurtosis) of the returns, bias-corrected sample estimates (``scipy.stats`` with ``bias=False``);
    kurtosis is *not* excess (a normal has 3). None with fewer than 4 returns or a flat curve."""
    array = _returns_array(returns)
    if len(array) < 4 or array.std() < _TINY:
        return None
    return (float(stats.skew(array, bias=False)), float(stats.kurtosis(array, fisher=False, bias=False)))


def _psr(sr: float, sr_benchmark: float, n_obs: int, skew: float, kurt: float) -> float | None:
    variance = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2
    if n_obs < 2 or not variance > 0:
        return None
    return float(stats.norm.cdf((sr - sr_benchmark) * math.sqrt(n_obs - 1) / math.sqrt(variance)))


def probabilistic_sharpe_ratio(returns, sr_benchmark: float = 0.0, *, risk_free_per_period: float = 0.0
                               ) -> float | None:
    """Probabilistic Sharpe ratio (Bailey & López de Prado, 2012): the probability that the true Sharpe ratio
    exceeds ``sr_benchmark``,

    ``PSR = Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2))``

    with the *per-period* (not annualised) ``SR = mean(x) / std(x, ddof=1)`` of ``x = r - risk_free_per_period``,
    ``n`` returns, skewness ``g3`` and kurtosis ``g4`` (normal = 3) from ``return_moments``. ``sr_benchmark`` is
    per period too (an annual SR* is ``SR* / sqrt(P)``). None with fewer than 4 returns, a flat curve, or a
    non-positive variance term (extreme skew).
    """
    array = _returns_array(returns) - float(risk_free_per_period)
    moments = return_moments(array)
    if moments is None:
        return None
    sr = float(array.mean() / array.std(ddof=1))
    return _psr(sr, float(sr_benchmark), len(array), *moments)


def deflated_sharpe_ratio(sr: float, n_trials: int, var_of_trials: float, n_obs: int, skew: float, kurt: float
                          ) -> float | None:
    """Deflated Sharpe ratio (Bailey & López de Prado, 2014): the PSR of the best of ``n_trials`` strategies against
    the Sharpe ratio expected from the best of that many *unskilled* trials,

    ``SR0 = sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e)))``, ``DSR = PSR(SR0)``

    where ``V = var_of_trials`` is the variance of the trials' Sharpe ratios and gamma the Euler–Mascheroni
    constant. ``sr``, ``V``, ``n_obs``, ``skew`` and ``kurt`` (normal = 3) are all per period, as in
    ``probabilistic_sharpe_ratio``. With one trial there is nothing to deflate: ``SR0 = 0``. The paper's example
    (annual SR 2.5, V 0.5, N 100, 1250 daily returns, skew -3, kurtosis 10, 250 days a year) gives 0.9004.
    """
    n_trials = int(n_trials)
    if n_trials < 1:
        raise ConfigError(f"n_trials counts the strategies tried and is at least 1, got {n_trials}")
    if not var_of_trials >= 0:
        raise ConfigError(f"var_of_trials is a variance of Sharpe ratios (>= 0), got {var_of_trials}")
    sr0 = 0.0
    if n_trials > 1:
        sr0 = math.sqrt(var_of_trials) * ((1 - EULER_GAMMA) * stats.norm.ppf(1 - 1 / n_trials)
                                          + EULER_GAMMA * stats.norm.ppf(1 - 1 / (n_trials * math.e)))
    return _psr(float(sr), float(sr0), int(n_obs), float(skew), float(kurt))


# ---------------------------------------------------------------------------------------------- series for plots


def rolling_sharpe(returns: pd.Series, window: int, periods_per_year: float) -> pd.Series:
    """Annualised Sharpe ratio over a trailing window of ``window`` daily returns (risk-free 0); NaN until the
    window is full and where the window is flat."""
    mean = returns.rolling(window, min_periods=window).mean()
    sd = returns.rolling(window, min_periods=window).std(ddof=1)
    return (mean / sd.where(sd >= _TINY) * math.sqrt(_ppy(periods_per_year))).rename("rolling_sharpe")


def monthly_returns(returns: pd.Series) -> pd.DataFrame:
    """Compounded returns per calendar month (UTC): rows are years, columns 1..12 (NaN where no day) and
    ``year`` (the year's compounded return over the months present)."""
    index = pd.DatetimeIndex(returns.index)
    growth = (1.0 + returns).groupby([index.year, index.month]).prod()
    table = (growth - 1.0).unstack().reindex(columns=range(1, 13))
    table.index.name, table.columns.name = "year", "month"
    table["year"] = growth.groupby(level=0).prod() - 1.0
    return table


# ---------------------------------------------------------------------------------------------- summary


def summary(equity, trades: pd.DataFrame | None = None, *, exposure: pd.Series | None = None,
            periods_per_year: float | None = None, risk_free: float = 0.0) -> Stats:
    """Every metric in one JSON-safe dict (the ``stats.json`` of a backtest): snake_case keys, floats finite or
    None, ints, ISO strings. ``equity`` may be a backtest result with ``.equity`` (frame: time, equity, exposure)
    and ``.trades``; its exposure and trades are used unless given here.
    """
    if not isinstance(equity, pd.Series | pd.DataFrame) and hasattr(equity, "equity"):
        result, equity = equity, equity.equity
        trades = getattr(result, "trades", None) if trades is None else trades
    if isinstance(equity, pd.DataFrame) and exposure is None and "exposure" in equity.columns:
        exposure = equity["exposure"]
    curve = as_equity(equity)
    ppy = _infer_periods_per_year(curve.index, override=periods_per_year)
    daily = daily_returns(curve)
    table = as_trades(trades)
    rf_d = per_period_rate(risk_free, ppy)
    moments = return_moments(daily.to_numpy() - rf_d)
    out: dict[str, Any] = {
        "start": curve.index[0].isoformat(), "end": curve.index[-1].isoformat(), "bars": len(curve),
        "days": len(daily), "periods_per_year": ppy, "risk_free": float(risk_free),
        "start_equity": float(curve.iloc[0]), "end_equity": float(curve.iloc[-1]),
        "total_return": total_return(curve), "cagr": cagr(curve),
        "annual_return": annual_return(daily, ppy), "annual_volatility": annual_volatility(daily, ppy),
        "sharpe": sharpe_ratio(daily, ppy, risk_free), "sortino": sortino_ratio(daily, ppy, risk_free),
        "calmar": calmar_ratio(curve), "max_drawdown": max_drawdown(curve),
        "max_drawdown_duration": max_drawdown_duration(curve),
        "var_95": value_at_risk(daily), "cvar_95": conditional_value_at_risk(daily),
        "psr": probabilistic_sharpe_ratio(daily, risk_free_per_period=rf_d),
        "skew": moments[0] if moments else None, "kurtosis": moments[1] if moments else None,
        "best_day": float(daily.max()) if len(daily) else None,
        "worst_day": float(daily.min()) if len(daily) else None,
        "n_trades": len(table), "win_rate": win_rate(table), "profit_factor": profit_factor(table),
        "expectancy": expectancy(table), "avg_trade_return": avg_trade_return(table), "sqn": sqn(table),
        "exposure": exposure_time(curve.index, exposure=exposure, trades=table),
        "avg_trade_duration": avg_trade_duration(table, end=curve.index[-1]),
    }
    return {key: _json_value(value) for key, value in out.items()}


def _json_value(value):
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    return _finite(value)
