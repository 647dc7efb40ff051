"""Plain-language verdicts on backtest statistics (``performance.summary``'s keys): the tearsheet's and the
``backtest`` command's "what it means" column. Bands are rules of thumb, stated in each branch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Verdict:
    """A plain-language reading of one stat. ``tone``: good, fair, poor, check (too good to be true), info."""

    tone: str
    text: str


def _bands(value: float, bands: tuple[tuple[float, str, str], ...], last: tuple[str, str]) -> Verdict:
    for upper, tone, text in bands:
        if value < upper:
            return Verdict(tone, text)
    return Verdict(*last)


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def verdict(name: str, value, stats: Mapping[str, Any] | None = None) -> Verdict:
    """The verdict for stat ``name`` at ``value``; ``stats`` (the summary) supplies context such as the number of
    days and trades. Unknown stats get an empty info verdict."""
    stats = stats or {}
    days, trades = stats.get("days"), stats.get("n_trades")
    short = days is not None and days < 90
    if value is None:
        if name == "profit_factor" and trades:
            return Verdict("check", "no losing trade — check the costs and the exits")
        return Verdict("info", _UNDEFINED.get(name, "not defined for this backtest"))
    if name in ("sharpe", "sortino", "calmar"):
        upper = {"sharpe": (1, 2), "sortino": (1.5, 3), "calmar": (0.5, 3)}[name]
        found = _bands(value, ((0, "poor", "loses money after risk"), (upper[0], "fair", "weak"),
                               (upper[1], "good", "good")),
                       ("check", "excellent — check for look-ahead or overfitting"))
        return Verdict(found.tone, found.text + ("; fewer than 90 days: unreliable" if short else ""))
    if name == "max_drawdown":
        found = _bands(value, ((0.1, "good", "shallow"), (0.2, "fair", "moderate"), (0.35, "poor", "deep"),
                               (0.5, "poor", "severe")), ("poor", "ruinous"))
        if value >= 1:
            return Verdict("poor", "ruin: the account was wiped out")
        if value == 0:
            return Verdict("good", "no drawdown: equity never fell")
        return Verdict(found.tone, f"{found.text}; needs +{_pct(1 / (1 - value) - 1)} to recover")
    if name == "max_drawdown_duration":
        return _bands(value, ((1e-9, "good", "never under water"), (30, "good", "recovers within a month"),
                              (180, "fair", "months under water")),
                      ("poor", "long under water: more than half a year"))
    if name == "psr":
        return _bands(value, ((0.95, "poor", "not significant — the Sharpe ratio could be luck"),
                              (0.99, "good", "significant at 95%")), ("good", "significant at 99%"))
    if name == "win_rate":
        return _bands(value, ((0.3, "info", "low — relies on a few large winners"),
                              (0.6, "info", "typical; judge it with the profit factor")),
                      ("info", "high — check that losers are not left to run"))
    if name == "profit_factor":
        return _bands(value, ((1, "poor", "loses money"), (1.3, "fair", "thin edge; costs may erase it"),
                              (2, "good", "good"), (3, "good", "strong")),
                      ("check", "excellent — check for look-ahead or overfitting"))
    if name == "sqn":
        return _bands(value, ((1.6, "poor", "poor"), (2, "fair", "below average"), (2.5, "fair", "average"),
                              (3, "good", "good"), (5, "good", "excellent")),
                      ("check", "superb — check for look-ahead or overfitting"))
    if name == "n_trades":
        return _bands(value, ((1, "info", "no trades"), (30, "poor", "too few trades for reliable statistics"),
                              (100, "fair", "enough for rough statistics")), ("good", "enough trades"))
    if name == "exposure":
        return _bands(value, ((0.1, "info", "rarely in the market"), (0.9, "info", "in the market part of the time")),
                      ("info", "almost always in the market — compare with buy-and-hold"))
    if name == "annual_volatility":
        return _bands(value, ((0.1, "info", "low"), (0.3, "info", "moderate (like a stock index)"),
                              (0.6, "info", "high (like bitcoin)")), ("info", "very high"))
    if name in ("total_return", "cagr", "annual_return", "expectancy", "avg_trade_return"):
        text = "loses money" if value < 0 else ("flat" if value == 0 else "makes money")
        return Verdict("poor" if value < 0 else "good" if value > 0 else "fair",
                       text + ("; annualised over fewer than 90 days: unreliable"
                               if short and name in ("cagr", "annual_return") else ""))
    if name in ("var_95", "cvar_95") and value <= 0:
        return Verdict("info", "even the worst day in 20 loses nothing")
    if name == "var_95":
        return Verdict("info", f"1 day in 20 loses more than {_pct(value)}")
    if name == "cvar_95":
        return Verdict("info", f"the worst day in 20 loses {_pct(value)} on average")
    if name == "avg_trade_duration":
        return Verdict("info", f"about {value * 24:.1f} hours" if value < 2 else f"about {value:.1f} days")
    return Verdict("info", "")


_UNDEFINED = {"sharpe": "undefined: the equity is flat", "sortino": "undefined: no losing day",
              "calmar": "undefined: no drawdown", "psr": "undefined: too few days or flat equity",
              "win_rate": "no trades", "profit_factor": "no trades", "expectancy": "no trades",
              "sqn": "needs at least 2 trades with different results",
              "avg_trade_return": "no trades or no trade returns", "avg_trade_duration": "no trades",
              "cagr": "undefined: span too short", "var_95": "no daily returns", "cvar_95": "no daily returns"}


def verdicts(stats: Mapping[str, Any]) -> dict[str, Verdict]:
    """A verdict for every stat in ``stats`` (the output of ``summary``)."""
    return {name: verdict(name, value, stats) for name, value in stats.items()}
