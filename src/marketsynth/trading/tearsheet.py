"""The backtest tearsheet: one HTML page in the shared layout (``marketsynth.reports``).

Sections: a plain-language summary; the stats table with a verdict per stat, strategy next to buy-and-hold; equity
against buy-and-hold; the underwater curve; monthly returns; rolling Sharpe; trade P&L; exposure; conventions.
``write_tearsheet`` takes anything with ``.equity`` (a frame with ``time``, ``equity`` and optionally
``exposure`` and ``price``) and ``.trades`` (entry_time, exit_time, pnl, return); ``.stats`` is used when present,
otherwise ``performance.summary`` computes it. Buy-and-hold is ``benchmark_equity`` when given, else the ``price``
column, rescaled to the strategy's starting equity. Figures are bare matplotlib ``Figure`` objects (no pyplot, no
GUI backend) rendered to PNG, embedded in the page and written beside it with ``trades.csv``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from marketsynth import reports
from marketsynth.errors import DataError
from marketsynth.trading import performance as perf
from marketsynth.trading import verdicts

STRATEGY, BENCHMARK = "#1f5fa8", "#8c959f"
UP, DOWN = "#26a69a", "#ef5350"
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.spines.top": False, "axes.spines.right": False}
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TONE_BADGE = {"good": "good", "fair": "fair", "poor": "poor", "check": "fair", "info": "n/a"}

# (stats key, label, hint, value format, what it means); a str starts a group of rows
ROWS = (
    "Returns",
    ("total_return", "Total return", "whole period", "pct", "End equity over start equity, minus 1."),
    ("cagr", "CAGR", "calendar years of 365.25 days", "pct",
     "Compound annual growth rate: (end / start) ^ (1 / years) − 1."),
    ("annual_return", "Annualised return", "mean daily return × periods", "pct",
     "Arithmetic: the mean daily return times the periods per year (the Sharpe numerator)."),
    "Risk",
    ("annual_volatility", "Annualised volatility", "daily std × √periods", "frac",
     "Standard deviation of daily returns (ddof 1), scaled by the square root of the periods per year."),
    ("max_drawdown", "Max drawdown", "peak to trough, at bar resolution", "frac",
     "The largest fall from a running peak of equity, as a positive fraction."),
    ("max_drawdown_duration", "Max drawdown duration", "peak to recovery", "days",
     "The longest time from a peak until equity is back at it (or until the end, if it never is)."),
    ("var_95", "Daily VaR 95%", "historical", "frac",
     "The loss that 1 day in 20 exceeds: the empirical 95% quantile of daily losses."),
    ("cvar_95", "Daily CVaR 95%", "historical expected shortfall", "frac",
     "The mean loss of the worst 5% of days."),
    "Risk-adjusted",
    ("sharpe", "Sharpe ratio", "annualised, daily returns", "ratio",
     "Mean daily excess return over its standard deviation, × √periods per year."),
    ("sortino", "Sortino ratio", "annualised, daily returns", "ratio",
     "Like Sharpe, but divides by the downside deviation (only days below the risk-free rate count)."),
    ("calmar", "Calmar ratio", "CAGR / max drawdown", "ratio", "Growth per unit of the worst drawdown."),
    ("psr", "Probabilistic Sharpe", "P(true Sharpe > 0)", "prob",
     "Bailey & López de Prado: the chance the true Sharpe ratio is above 0, given the number of days, skew and "
     "kurtosis of the daily returns."),
    "Trades",
    ("n_trades", "Trades", "closed and open", "int", "Number of trades."),
    ("win_rate", "Win rate", "P&L > 0", "frac", "Share of trades that made money (break-even is not a win)."),
    ("profit_factor", "Profit factor", "gross profit / gross loss", "ratio",
     "Sum of winning P&L over the sum of losing P&L."),
    ("expectancy", "Expectancy", "mean P&L per trade", "money", "Average profit or loss of one trade, after costs."),
    ("avg_trade_return", "Average trade return", "mean of trade returns", "pct", "Average return of one trade."),
    ("sqn", "SQN", "Van Tharp's System Quality Number", "ratio",
     "√trades × mean P&L / std of P&L: how consistent the edge is across trades."),
    ("avg_trade_duration", "Average trade duration", "entry to exit", "days", "Mean holding time of a trade."),
    ("exposure", "Exposure", "share of bars in the market", "frac", "How much of the time a position was open."),
)
_BENCHMARK_KEYS = {"total_return", "cagr", "annual_return", "annual_volatility", "max_drawdown",
                   "max_drawdown_duration", "var_95", "cvar_95", "sharpe", "sortino", "calmar", "psr", "exposure"}


@dataclass(frozen=True)
class _StatRow(reports.MetricRow):
    """A metric row whose badge shows the verdict's tone in words ('check' in amber, 'info' in grey)."""

    tone: str = "info"

    @property
    def badge(self) -> reports.Badge:
        return reports.Badge(_TONE_BADGE.get(self.tone, "n/a"), self.tone)


def fmt(value, kind: str) -> str:
    """A stat for the table: signed (pct) or unsigned (frac) percentages with 2 decimals, ratios 2, probabilities 3,
    days, money, or '—' for None."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    value = value + 0  # -0.0 -> 0.0
    if kind == "pct":
        return f"{value * 100:+.2f}%" if abs(value) < 1e4 else f"{value:+.3g}×100%"
    if kind == "frac":
        return f"{value * 100:.2f}%"
    if kind == "ratio":
        return f"{value:.2f}"
    if kind == "prob":
        return f"{value:.3f}"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "money":
        return f"{value:+,.2f}"
    if kind == "days":
        return f"{value * 24:.1f} h" if value < 2 else f"{value:,.1f} d"
    return str(value)


# ---------------------------------------------------------------------------------------------- inputs


def _frame(result_like) -> pd.DataFrame:
    equity = getattr(result_like, "equity", None)
    if isinstance(equity, pd.Series):
        equity = pd.DataFrame({"time": equity.index, "equity": equity.to_numpy()})
    if not isinstance(equity, pd.DataFrame):
        raise DataError("the tearsheet needs a result with .equity (a frame with time and equity columns)")
    curve = perf.as_equity(equity)
    frame = equity.assign(time=pd.to_datetime(equity["time"], utc=True)).sort_values("time").iloc[: len(curve)]
    return frame.set_index("time").assign(equity=curve.to_numpy())


def _benchmark(frame: pd.DataFrame, benchmark_equity) -> pd.Series | None:
    if benchmark_equity is None:
        if "price" not in frame.columns:
            return None
        benchmark_equity = frame["price"]
    curve = perf.as_equity(benchmark_equity)
    return curve / curve.iloc[0] * frame["equity"].iloc[0]


# ---------------------------------------------------------------------------------------------- figures


def _styled(build):
    @functools.wraps(build)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return build(*args, **kwargs)
    return wrapper


def _figure(height: float = 3.6, width: float = 11.0) -> Figure:
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _naive(index) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(index).tz_convert("UTC").tz_localize(None)


@_styled
def equity_figure(equity: pd.Series, benchmark: pd.Series | None) -> Figure:
    """Strategy equity against buy-and-hold (log scale when equity spans more than 10×)."""
    fig = _figure()
    ax = fig.subplots()
    ax.plot(_naive(equity.index), equity.to_numpy(), color=STRATEGY, lw=1.3, label="strategy")
    if benchmark is not None:
        ax.plot(_naive(benchmark.index), benchmark.to_numpy(), color=BENCHMARK, lw=1.0, label="buy-and-hold")
    both = pd.concat([equity, benchmark]) if benchmark is not None else equity
    if both.min() > 0 and both.max() / both.min() > 10:
        ax.set_yscale("log")
    ax.set_ylabel("equity")
    ax.set_title("Equity: the strategy against buying at the start and holding")
    ax.legend(loc="upper left", frameon=False)
    ax.grid(alpha=0.3)
    return fig


@_styled
def underwater_figure(equity: pd.Series, benchmark: pd.Series | None) -> Figure:
    """Drawdown below the running peak, in percent, for the strategy (filled) and buy-and-hold (line)."""
    fig = _figure(2.8)
    ax = fig.subplots()
    under = perf.underwater(equity) * 100
    ax.fill_between(_naive(under.index), under.to_numpy(), 0, color=DOWN, alpha=0.35, lw=0, label="strategy")
    ax.plot(_naive(under.index), under.to_numpy(), color=DOWN, lw=0.8)
    if benchmark is not None:
        bench = perf.underwater(benchmark) * 100
        ax.plot(_naive(bench.index), bench.to_numpy(), color=BENCHMARK, lw=0.9, label="buy-and-hold")
    ax.set_ylabel("drawdown, %")
    ax.set_title("Underwater: how far equity is below its last peak")
    ax.legend(loc="lower left", frameon=False)
    ax.grid(alpha=0.3)
    return fig


@_styled
def monthly_figure(daily: pd.Series) -> Figure:
    """Compounded return per month (green up, red down, numbers in percent) and per year (last column)."""
    table = perf.monthly_returns(daily)
    values = table.to_numpy(dtype=float) * 100
    fig = _figure(0.9 + 0.42 * len(table), 11.0)
    ax = fig.subplots()
    limit = max(float(np.nanmax(np.abs(values[:, :12]))) if np.isfinite(values[:, :12]).any() else 1.0, 1e-9)
    shown = np.ma.masked_invalid(values)
    shown[:, 12] = np.ma.masked  # the year column is text only: its scale differs from a month's
    ax.imshow(shown, cmap="RdYlGn", norm=TwoSlopeNorm(0, -limit, limit), aspect="auto")
    for (row, col), value in np.ndenumerate(values):
        if np.isfinite(value):
            ax.text(col, row, f"{value:.1f}", ha="center", va="center", fontsize=8,
                    fontweight="bold" if col == 12 else "normal")
    ax.set_xticks(range(13), [*MONTHS, "Year"])
    ax.set_yticks(range(len(table)), [str(year) for year in table.index])
    ax.axvline(11.5, color="white", lw=4)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title("Monthly returns, % (UTC months; a partial month counts its days only)")
    return fig


@_styled
def rolling_sharpe_figure(daily: pd.Series, bench_daily: pd.Series | None, window: int, ppy: float) -> Figure:
    """Annualised Sharpe ratio over a trailing window, with the 0, 1 and 2 bands of the verdicts."""
    fig = _figure(2.8)
    ax = fig.subplots()
    rolling = perf.rolling_sharpe(daily, window, ppy)
    ax.plot(_naive(rolling.index), rolling.to_numpy(), color=STRATEGY, lw=1.2, label="strategy")
    if bench_daily is not None and len(bench_daily) >= window:
        bench = perf.rolling_sharpe(bench_daily, window, ppy)
        ax.plot(_naive(bench.index), bench.to_numpy(), color=BENCHMARK, lw=0.9, label="buy-and-hold")
    for level, style in ((0, "-"), (1, ":"), (2, ":")):
        ax.axhline(level, color="#57606a", lw=0.8, ls=style)
    ax.set_ylabel("Sharpe")
    ax.set_title(f"Rolling Sharpe ratio over {window} days (annualised; dotted lines at 1 and 2)")
    ax.legend(loc="upper left", frameon=False)
    ax.grid(alpha=0.3)
    return fig


@_styled
def pnl_histogram(trades: pd.DataFrame) -> Figure:
    """Trade P&L histogram: losing bins red, winning bins green, the mean as a dashed line."""
    pnl = trades["pnl"].to_numpy(dtype=float)
    fig = _figure(2.8)
    ax = fig.subplots()
    count = int(min(60, max(8, math.sqrt(len(pnl)) * 2)))
    width = (pnl.max() - pnl.min()) / count or max(abs(pnl.max()), 1.0) / 4
    edges = np.arange(math.floor(pnl.min() / width), math.floor(pnl.max() / width) + 2) * width  # 0 is an edge
    _, edges, patches = ax.hist(pnl, bins=edges, edgecolor="white", linewidth=0.5)
    for patch, left, right in zip(patches, edges[:-1], edges[1:], strict=True):
        patch.set_facecolor(UP if (left + right) / 2 > 0 else DOWN)
    ax.axvline(0, color="#57606a", lw=0.8)
    ax.axvline(pnl.mean(), color="#1f2328", lw=1.0, ls="--", label=f"mean {pnl.mean():+,.2f}")
    ax.set_xlabel("P&L per trade (account currency)")
    ax.set_ylabel("trades")
    ax.set_title(f"Trade P&L: {len(pnl)} trades, {int((pnl > 0).sum())} winners")
    ax.legend(loc="upper right", frameon=False)
    return fig


@_styled
def exposure_figure(exposure: pd.Series, label: str) -> Figure:
    """Exposure over time (a step line, filled)."""
    fig = _figure(2.4)
    ax = fig.subplots()
    times, values = _naive(exposure.index), exposure.to_numpy(dtype=float)
    ax.fill_between(times, values, 0, step="post", color=STRATEGY, alpha=0.3, lw=0)
    ax.step(times, values, where="post", color=STRATEGY, lw=0.8)
    ax.axhline(0, color="#57606a", lw=0.8)
    ax.set_ylabel(label)
    ax.set_title("Exposure: when the strategy held a position")
    ax.grid(alpha=0.3)
    return fig


# ---------------------------------------------------------------------------------------------- page


def build_tearsheet(result_like, *, benchmark_equity=None, title: str = "marketsynth tearsheet",
                    stats: Mapping | None = None) -> reports.Page:
    """The tearsheet as a ``reports.Page`` (see the module docstring for what ``result_like`` holds)."""
    frame = _frame(result_like)
    equity = frame["equity"]
    trades = perf.as_trades(getattr(result_like, "trades", None))
    if stats is None:
        stats = getattr(result_like, "stats", None)
    if stats is None:
        exposure = frame["exposure"] if "exposure" in frame.columns else None
        stats = perf.summary(equity, trades, exposure=exposure)
    stats = dict(stats)
    benchmark = _benchmark(frame, benchmark_equity)
    ppy = float(stats.get("periods_per_year") or perf.periods_per_year(equity.index))
    bench_stats = None
    if benchmark is not None:  # always in the market
        bench_stats = perf.summary(benchmark, None, exposure=np.ones(len(benchmark)), periods_per_year=ppy)
    daily = perf.daily_returns(equity)
    sections = [reports.Section("Summary", _summary_blocks(stats, bench_stats)),
                reports.Section("Statistics", _stats_blocks(stats, bench_stats)),
                reports.Section("Equity", [reports.Figure(reports.figure_png(equity_figure(equity, benchmark)),
                                                          "equity.png"),
                                           reports.Figure(reports.figure_png(underwater_figure(equity, benchmark)),
                                                          "underwater.png")]),
                reports.Section("Returns", _returns_blocks(daily, benchmark, ppy)),
                reports.Section("Trades", _trade_blocks(frame, trades)),
                reports.Section("Conventions", _conventions(stats))]
    subtitle = (f"{_day(stats.get('start'))} → {_day(stats.get('end'))} UTC · {stats.get('bars', len(frame)):,} bars · "
                f"{stats.get('days', len(daily)):,} days · {ppy:g} periods a year")
    return reports.Page(title, sections, subtitle=subtitle)


def write_tearsheet(path: str | Path, result_like, *, benchmark_equity=None, title: str = "marketsynth tearsheet",
                    stats: Mapping | None = None) -> Path:
    """Write the tearsheet page to ``path`` (.html), its figures and ``trades.csv`` to ``<stem>_files/``; both
    atomically. Returns ``path``."""
    page = build_tearsheet(result_like, benchmark_equity=benchmark_equity, title=title, stats=stats)
    trades = getattr(result_like, "trades", None)
    files = {"trades.csv": trades.to_csv(index=False).encode()} if isinstance(trades, pd.DataFrame) else {}
    return reports.write_page(path, page, files=files)


def _day(value) -> str:
    return "?" if value is None else str(value)[:16].replace("T", " ")


def _summary_blocks(stats: Mapping, bench: Mapping | None) -> list:
    verdict = functools.partial(verdicts.verdict, stats=stats)
    start, end = stats.get("start_equity"), stats.get("end_equity")
    parts: list = []
    if start is not None and end is not None:
        parts += ["The strategy turned ", reports.Strong(f"{start:,.2f}"), " into ", reports.Strong(f"{end:,.2f}"),
                  f" ({fmt(stats.get('total_return'), 'pct')})"]
        if bench is not None:
            parts.append(f"; buying and holding returned {fmt(bench.get('total_return'), 'pct')}")
        parts.append(". ")
    sharpe, mdd = stats.get("sharpe"), stats.get("max_drawdown")
    parts += [f"Sharpe {fmt(sharpe, 'ratio')}: {verdict('sharpe', sharpe).text}. ",
              f"Worst drawdown {fmt(mdd, 'frac')}: {verdict('max_drawdown', mdd).text}. ",
              f"Probabilistic Sharpe {fmt(stats.get('psr'), 'prob')}: {verdict('psr', stats.get('psr')).text}. ",
              f"{stats.get('n_trades', 0):,} trades: {verdict('n_trades', stats.get('n_trades', 0)).text}."]
    checks = [name for name, found in verdicts.verdicts(stats).items() if found.tone == "check"]
    blocks = [reports.Paragraph(parts, style="lead")]
    if checks:
        blocks.append(reports.Paragraph([reports.Badge("fair", "check"), " Too good to be true? ",
                                         ", ".join(checks), " look excellent: rule out look-ahead, overfitting "
                                         "and missing costs before trusting them."]))
    rows = [["period", f"{_day(stats.get('start'))} → {_day(stats.get('end'))} UTC"],
            ["bars / days", f"{stats.get('bars', 0):,} / {stats.get('days', 0):,}"],
            ["periods per year", f"{stats.get('periods_per_year', 0):g}"],
            ["risk-free rate", fmt(stats.get("risk_free", 0.0), "frac") + " a year"]]
    blocks.append(reports.Table(rows))
    return blocks


def _stats_blocks(stats: Mapping, bench: Mapping | None) -> list:
    rows: list = []
    for spec in ROWS:
        if isinstance(spec, str):
            rows.append(spec)
            continue
        key, label, hint, kind, meaning = spec
        found = verdicts.verdict(key, stats.get(key), stats)
        values = [fmt(stats.get(key), kind)]
        if bench is not None:
            values.append(fmt(bench.get(key), kind) if key in _BENCHMARK_KEYS else "—")
        explanation = f"{found.text[:1].upper()}{found.text[1:]}. {meaning}" if found.text else meaning
        rows.append(_StatRow(label, values, found.tone, explanation, hint, tone=found.tone))
    columns = ["strategy", "buy-and-hold"] if bench is not None else ["strategy"]
    return [reports.MetricTable(rows, columns=columns, name_heading="stat"),
            reports.Note("Verdicts: good / fair / poor; 'check' marks a figure so good it more often means a bug "
                         "(look-ahead, overfitting, missing costs) than an edge; 'info' describes without judging.")]


def _returns_blocks(daily: pd.Series, benchmark: pd.Series | None, ppy: float) -> list:
    if len(daily) == 0:
        return [reports.Note("Less than a day of equity: no daily returns to show.")]
    blocks = [reports.Figure(reports.figure_png(monthly_figure(daily)), "monthly returns.png")]
    window = 90 if len(daily) >= 180 else max(10, len(daily) // 3)
    if len(daily) >= max(window, 20):
        bench_daily = perf.daily_returns(benchmark) if benchmark is not None else None
        blocks.append(reports.Figure(reports.figure_png(rolling_sharpe_figure(daily, bench_daily, window, ppy)),
                                     "rolling sharpe.png"))
    else:
        blocks.append(reports.Note(f"Only {len(daily)} days: too few for a rolling Sharpe ratio."))
    return blocks


def _trade_blocks(frame: pd.DataFrame, trades: pd.DataFrame) -> list:
    blocks: list = []
    if len(trades):
        blocks.append(reports.Figure(reports.figure_png(pnl_histogram(trades)), "trade pnl.png"))
        ranked = trades.sort_values("pnl")
        shown = pd.concat([ranked.tail(5).iloc[::-1], ranked.head(min(5, max(0, len(ranked) - 5)))])
        rows = [[row["entry_time"].strftime("%Y-%m-%d %H:%M"),
                 "open" if pd.isna(row["exit_time"]) else row["exit_time"].strftime("%Y-%m-%d %H:%M"),
                 f"{row['pnl']:+,.2f}", fmt(row.get("return"), "pct")]
                for row in shown.to_dict("records")]
        blocks += [reports.Heading("Best and worst trades"),
                   reports.Table(rows, header=["entry (UTC)", "exit (UTC)", "P&L", "return"], style="wide"),
                   reports.Note("Every trade is in trades.csv beside this page.")]
    else:
        blocks.append(reports.Note("No trades: the strategy never entered the market."))
    if "exposure" in frame.columns:
        exposure, label = frame["exposure"].astype(float), "exposure"
    else:
        exposure, label = pd.Series(perf.in_market(frame.index, trades).astype(float), index=frame.index), "in market"
    blocks.append(reports.Figure(reports.figure_png(exposure_figure(exposure, label)), "exposure.png"))
    return blocks


def _conventions(stats: Mapping) -> list:
    return [reports.Bullets([
        "Ratios (Sharpe, Sortino, volatility, VaR, PSR) use daily returns: equity sampled at the last bar of each "
        "UTC day. Drawdowns use every bar.",
        f"{stats.get('periods_per_year', 0):g} periods a year (365 when the market trades at weekends, 252 "
        "otherwise); CAGR over calendar years of 365.25 days.",
        "Buy-and-hold: the asset's price (or the benchmark given), rescaled to the strategy's starting equity, "
        "with no costs.",
        "Undefined figures (a flat curve's Sharpe ratio, the profit factor without a losing trade) show as —.",
    ])]
