"""The scenarios report: risk, distribution and stress tables, the fan chart and the loss histogram.

The page is written with the project's one page layout (``marketsynth.reports``: typed blocks, jinja2 templates,
autoescape on; the PNGs are embedded and written beside the page); this module builds the section's blocks and its
two figures. Figures are drawn on a bare ``matplotlib.figure.Figure`` (no pyplot state, no GUI backend), so it is
safe in servers and tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from marketsynth import reports
from marketsynth.risk.measures import LEVELS, PERCENTILES
from marketsynth.risk.scenarios import RiskSummary, ScenarioAnalysis

_BANDS = ((1, 99, 0.15), (5, 95, 0.25), (25, 75, 0.4))  # percentile pairs of the fan and their shading


def fan_chart(analysis: ScenarioAnalysis) -> Figure:
    """Percentile bands of the cumulative P&L over the horizon (bar 0 = the start)."""
    fig = Figure(figsize=(8, 4.2))
    ax = fig.subplots()
    fan = analysis.fan * 100
    steps = np.arange(fan.shape[1])
    index = {p: i for i, p in enumerate(PERCENTILES)}
    for low, high, alpha in _BANDS:
        ax.fill_between(steps, fan[index[low]], fan[index[high]], color="tab:blue", alpha=alpha, linewidth=0,
                        label=f"{low}–{high}th percentile")
    ax.plot(steps, fan[index[50]], color="tab:blue", linewidth=1.8, label="median")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xlabel("bars from the start")
    ax.set_ylabel("cumulative P&L, % of capital")
    ax.set_title(f"{analysis.settings['num']} scenarios of {analysis.settings['horizon']} bars "
                 f"({analysis.model['name']}, {temperature_text(analysis.settings, short=True)})")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def loss_histogram(analysis: ScenarioAnalysis) -> Figure:
    """Histogram of horizon losses with the scenarios' VaR/CVaR (solid/dashed) and the real data's VaR (dotted)."""
    fig = Figure(figsize=(8, 4.2))
    ax = fig.subplots()
    losses = -analysis.pnl * 100
    ax.hist(losses, bins=min(100, max(20, len(losses) // 50)), color="0.6", alpha=0.8)
    colours = {LEVELS[0]: "tab:orange", LEVELS[1]: "tab:red"}
    for tail in analysis.base.tails:
        colour = colours.get(tail.level, "tab:purple")
        ax.axvline(tail.var * 100, color=colour, linewidth=1.6, label=f"VaR {tail.level:.0%} = {tail.var:.2%}")
        ax.axvline(tail.cvar * 100, color=colour, linewidth=1.6, linestyle="--",
                   label=f"CVaR {tail.level:.0%} = {tail.cvar:.2%}")
    if analysis.real is not None:
        for tail in analysis.real.tails:
            ax.axvline(tail.var * 100, color=colours.get(tail.level, "tab:purple"), linewidth=1.2, linestyle=":",
                       label=f"real VaR {tail.level:.0%} = {tail.var:.2%}")
    ax.set_xlabel("loss over the horizon, % of capital (right = worse)")
    ax.set_ylabel("scenarios")
    ax.set_title("Loss distribution")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def section_blocks(analysis: ScenarioAnalysis) -> list:
    """The section body: how to read it, the three tables and the notes (the figures are added after it)."""
    first = analysis.base.tail(LEVELS[0])
    s = analysis.settings
    columns = ["statistic", "scenarios"] + (["real data"] if analysis.real is not None else [])
    blocks = [
        reports.Paragraph([
            f"{s['num']} scenarios of {s['horizon']} bars from ", reports.Code(analysis.model["path"]),
            f" ({analysis.model['name']}, {analysis.model['simulation']}), {temperature_text(s)}"
            f"{', regime ' + str(s['regime']) if s['regime'] else ''}, position {s['position']:g}, seed {s['seed']}."]),
        reports.Paragraph(
            f"Losses are positive fractions of capital. VaR {first.level:.0%} = {first.var:.3f} means a loss of more "
            f"than {first.var:.1%} happens in at most {1 - first.level:.0%} of scenarios; CVaR is the mean loss in "
            f"that tail; ± is its bootstrap standard error (sampling noise of {s['num']} scenarios). "
            f"Real data: {analysis.real_note}."),
        reports.Table(risk_rows(analysis), RISK_COLUMNS),
        reports.Heading("Distribution of the horizon P&L"),
        reports.Table(distribution_rows(analysis), columns),
        reports.Heading(f"Stress tests (same seed; loss threshold {s['threshold']:g})"),
        reports.Table([stress_row(row) for row in analysis.stress], STRESS_COLUMNS),
    ]
    if analysis.notes:
        blocks.append(reports.Bullets(analysis.notes))
    return blocks


RISK_COLUMNS = ["measure", "scenarios (historical ± s.e.)", "parametric normal", "real data (historical)"]


def risk_rows(analysis: ScenarioAnalysis) -> list[list[str]]:
    """VaR/CVaR rows as text: the scenarios' historical figure with its bootstrap standard error, the normal
    figure from the scenarios' mean and std, and the real data's historical figure (shared by CLI and HTML)."""
    rows = []
    for level in LEVELS:
        ours = analysis.base.tail(level)
        theirs = analysis.real.tail(level) if analysis.real is not None else None
        se = analysis.stderr.get(level)
        for index, (name, value, normal) in enumerate((("VaR", ours.var, ours.var_normal),
                                                       ("CVaR", ours.cvar, ours.cvar_normal))):
            shown = _f(value) + (f" ± {se[index]:.4f}" if se else "")
            real = _f(getattr(theirs, name.lower())) if theirs else "n/a"
            rows.append([f"{name} {level:.0%}", shown, _f(normal), real])
    return rows


STRESS_COLUMNS = ["setting", "changes", "mean", "std", "VaR 95%", "CVaR 95%", "VaR 99%", "CVaR 99%", "worst loss",
                  "P(loss > threshold)", "flag"]


def stress_row(row: RiskSummary) -> list[str]:
    """One stress-table row as text (shared by the terminal table and the HTML): what it changes, its figures,
    and the flag of a stress that shows less risk than the baseline."""
    cells = [row.label, row.changes, _f(row.dist.mean), _f(row.dist.std)]
    for level in LEVELS:
        cells += [_f(row.tail(level).var), _f(row.tail(level).cvar)]
    return cells + [_f(row.worst_loss), f"{row.loss_beyond_threshold:.2%}", row.flag]


def temperature_text(settings: dict, *, short: bool = False) -> str:
    """``temperature 1.5`` (``T=1.5``), or that the model has none."""
    value = settings.get("temperature")
    if value is None:
        return "no sampling temperature"
    return f"T={value:g}" if short else f"temperature {value:g}"


_DIST_ROWS = [("mean", lambda d: d.mean), ("std", lambda d: d.std), ("skewness", lambda d: d.skewness),
              ("excess kurtosis", lambda d: d.excess_kurtosis),
              *((f"percentile {p}", lambda d, p=p: d.percentiles[p]) for p in PERCENTILES)]


def distribution_rows(analysis: ScenarioAnalysis) -> list[list[str]]:
    dists = [analysis.base.dist] + ([analysis.real.dist] if analysis.real is not None else [])
    return [[name, *[_f(getter(d)) for d in dists]] for name, getter in _DIST_ROWS]


def write_html(analysis: ScenarioAnalysis, path: str | Path) -> Path:
    """Write the scenarios page (a summary, then the section with its fan chart and loss histogram) to ``path``."""
    first = analysis.base.tail(LEVELS[0])
    summary = [["model", analysis.model["name"]],
               ["scenarios", f"{analysis.settings['num']} × {analysis.settings['horizon']} bars"],
               [f"VaR {first.level:.0%}", _f(first.var)], [f"CVaR {first.level:.0%}", _f(first.cvar)]]
    figures = [reports.Figure(reports.figure_png(fan_chart(analysis)), "scenario fan chart.png"),
               reports.Figure(reports.figure_png(loss_histogram(analysis)), "loss histogram.png")]
    page = reports.Page("marketsynth risk scenarios", [
        reports.Section("Summary", [reports.Table(summary)]),
        reports.Section("Risk scenarios", [*section_blocks(analysis), *figures])])
    return reports.write_page(path, page)


def _f(value: float) -> str:
    return f"{value:.4f}"
