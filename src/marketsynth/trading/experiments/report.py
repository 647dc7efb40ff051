"""Reports of the experiments: the text report (what the CLI prints and writes), augment.json / stress.json, and
the HTML pages (the project's one page layout, ``marketsynth.reports``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from marketsynth import reports
from marketsynth.data.io import atomic_path
from marketsynth.trading.experiments.augment import METRICS, NULL, REAL, AugmentResult
from marketsynth.trading.experiments.stress import FAN_PERCENTILES, StressResult

ARM_BLOCK = ("total_return", "sharpe", "max_drawdown", "win_rate", "profit_factor", "direction_accuracy", "n_trades")
LOWER_IS_BETTER = {"max_drawdown"}
PERCENT = {"total_return", "max_drawdown", "win_rate", "direction_accuracy"}


def _wide(rows, header) -> reports.Table:
    return reports.Table(rows, header, style="wide")


def arm_label(arm: str, ratio: float | None = None) -> str:
    times = f" ×{ratio:g}" if ratio is not None else ""
    if arm == REAL:
        return "real only"
    if arm == NULL:
        return f"real + null{times} (block bootstrap)"
    return f"real + {arm.removeprefix('aug:')}{times}"


def _v(value, metric: str = "") -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if metric == "n_trades":
        return f"{value:.1f}"
    if metric in PERCENT:
        return f"{value * 100:+.2f}%" if metric == "total_return" else f"{value * 100:.2f}%"
    return f"{value:.3f}"


def _ci(cell: dict[str, Any], metric: str) -> str:
    if cell.get("mean") is None:
        return "n/a"
    text = f"{_v(cell['mean'], metric)} [{_v(cell['low'], metric)}, {_v(cell['high'], metric)}]"
    return text + (f" ({cell['undefined']} undefined)" if cell.get("undefined") else "")


def _diff(cell: dict[str, Any], metric: str) -> str:
    if cell.get("mean") is None:
        return "n/a"
    scale, unit = (100, " pp") if metric in PERCENT else (1, "")
    better = cell["losses"] if metric in LOWER_IS_BETTER else cell["wins"]
    return (f"{cell['mean'] * scale:+.3f}{unit} [{cell['low'] * scale:+.3f}, {cell['high'] * scale:+.3f}], "
            f"better in {better:.0%} of {cell['n']}")


def verdict(cell: dict[str, Any], metric: str = "") -> str:
    """gain / harm / no clear effect from a difference's CI (the whole interval on one side of 0; for a metric
    where lower is better, such as max drawdown, below 0 is the gain)."""
    if cell.get("mean") is None:
        return "n/a"
    sign = -1 if metric in LOWER_IS_BETTER else 1
    low, high = sorted((sign * cell["low"], sign * cell["high"]))
    if low > 0:
        return "gain"
    if high < 0:
        return "harm"
    return "no clear effect"


# ---- augment -----------------------------------------------------------------------------------------------------
def augment_text(result: AugmentResult) -> str:
    """The text report: a block per arm, paired differences, PSR/DSR, every unit, quality, stress."""
    s = result.settings
    lines = [f"augmentation experiment: {s['strategy']} on {result.data.get('label')} "
             f"({result.data.get('start')} → {result.data.get('end')}, {result.data.get('bars')} bars)",
             f"{s['folds']} walk-forward folds × {s['seeds']} seeds (seeds {s['seed']}..{s['seed'] + s['seeds'] - 1}); "
             f"generators {', '.join(s['generators'])} trained inside each fold on its training bars only; ratio "
             f"{s['ratio']:g} (synthetic bars ≈ ratio × training bars, paths of {s['path_length']} bars); embargo "
             f"{s['embargo']} bars; same costs and test bars for every arm",
             "mean over folds × seeds [95% bootstrap CI]", ""]
    for arm in _arms(result):
        lines.append(f"== {arm_label(arm, None if arm == REAL else s['ratio'])} ==")
        for metric in ARM_BLOCK:
            lines.append(f"  {metric:<19} {_ci(result.summary[arm][metric], metric)}")
        lines.append("")
    for arm, against in result.differences.items():
        for key, cells in against.items():
            lines.append(f"== paired difference: {arm.removeprefix('aug:')} − {key.removeprefix('minus_')} ==")
            for metric in METRICS:
                lines.append(f"  {metric:<19} {_diff(cells[metric], metric)}  → {verdict(cells[metric], metric)}")
            lines.append("")
    first = next(iter(result.sharpe.values()), {})
    lines.append(f"== probabilistic / deflated Sharpe ratio (daily test returns chained over the folds; DSR deflates "
                 f"for {first.get('trials')} configurations tried, variance of their Sharpe ratios "
                 f"{first.get('trial_variance', 0):.4g}) ==")
    for key, row in result.sharpe.items():
        lines.append(f"  {key:<28} daily SR {_v(row['sharpe'])}  PSR {_v(row['psr'])}  DSR {_v(row['dsr'])}  "
                     f"({row['days']} days)")
    lines += ["", "== every unit (fold, seed, arm) =="]
    for u in result.units:
        lines.append(f"  fold {u['fold'] + 1} seed {u['seed']} {u['arm']:<20} return "
                     f"{_v(u['total_return'], 'total_return')}"
                     f"  sharpe {_v(u['sharpe'])}  maxDD {_v(u['max_drawdown'], 'max_drawdown')}  win "
                     f"{_v(u['win_rate'], 'win_rate')}  PF {_v(u['profit_factor'])}  dir.acc "
                     f"{_v(u['direction_accuracy'], 'direction_accuracy')}  trades {u['n_trades']}")
    if result.quality:
        lines += ["", "== synthetic-data quality (vs the folds' held-out bars; mean over folds × seeds) =="]
        for q in result.quality:
            lines.append(f"  {arm_label(q['arm']):<34} TSTR ratio {_v(q['tstr_ratio'])}  KL(returns) "
                         f"{_v(q['kl_returns'])}  lag-1 ACF diff {q['acf1_diff']:+.3f}  diversity "
                         f"{_v(q['diversity'])} (same-distribution level {_v(q['diversity_expected'])})")
    if result.stress:
        st = result.stress
        g = st["generator"]
        how = f"regime {g['regime']}" if g.get("regime") else f"temperature {g.get('temperature') or 1:g}"
        lines += ["", f"== stress test: {st['num']} paths × {st['horizon']} bars from {g['name']} ({how}); each arm's "
                      f"last-fold strategy, mean over seeds =="]
        for arm, row in st["arms"].items():
            lines.append(f"  {arm_label(arm):<34} mean return {_v(row['mean_return'], 'total_return')}  worst "
                         f"{_v(row['worst_return'], 'total_return')}  survival {_v(row['survival_rate'], 'win_rate')}  "
                         f"avg recovery {_v(row['avg_recovery_bars'])} bars (recovered "
                         f"{_v(row['recovered_share'], 'win_rate')})")
    lines += ["", f"({result.seconds:.0f} s)"]
    return "\n".join(lines) + "\n"


def _arms(result: AugmentResult) -> list[str]:
    return list(result.summary)


def write_json(path: Path, value: dict[str, Any]) -> Path:
    """JSON without NaN (None instead), atomically."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(_clean(value), indent=2, default=str, allow_nan=False) + "\n", encoding="utf-8")
    return Path(path)


def _clean(value):
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def augment_page(result: AugmentResult) -> reports.Page:
    s = result.settings
    arms = _arms(result)
    columns = ["metric", *[arm_label(a, None if a == REAL else s["ratio"]) for a in arms]]
    rows = [[m, *[_ci(result.summary[a][m], m) for a in arms]] for m in ARM_BLOCK]
    sections = [reports.Section("Summary", [
        reports.Paragraph([f"{s['strategy']} on {result.data.get('label')}: {s['folds']} walk-forward folds × "
                           f"{s['seeds']} seeds. Generators (", reports.Code(", ".join(s["generators"])),
                           ") were trained inside each fold on its training bars only; the null arm adds the same "
                           "number of block-bootstrap paths of the same real training bars. Every arm is backtested "
                           "on the fold's held-out bars with the same costs."]),
        _wide(rows, columns),
        reports.Note("Mean over folds × seeds with a 95% percentile bootstrap interval."),
    ])]
    diff_rows = []
    for arm, against in result.differences.items():
        for key, cells in against.items():
            for m in METRICS:
                diff_rows.append([f"{arm.removeprefix('aug:')} − {key.removeprefix('minus_')}", m, _diff(cells[m], m),
                                  verdict(cells[m], m)])
    sections.append(reports.Section("Paired differences", [_wide(diff_rows, ["comparison", "metric",
                                                                                     "mean [95% CI]", "verdict"])]))
    sharpe_rows = [[k, _v(r["sharpe"]), _v(r["psr"]), _v(r["dsr"]), str(r["days"])] for k, r in result.sharpe.items()]
    sections.append(reports.Section("PSR and DSR", [
        _wide(sharpe_rows, ["configuration", "daily Sharpe", "PSR", "DSR", "days"]),
        reports.Note(f"Daily test returns of each configuration chained over the folds. DSR deflates for every "
                     f"configuration tried ({len(result.sharpe)})."),
    ]))
    unit_rows = [[str(u["fold"] + 1), str(u["seed"]), u["arm"], _v(u["total_return"], "total_return"),
                  _v(u["sharpe"]), _v(u["max_drawdown"], "max_drawdown"), _v(u["win_rate"], "win_rate"),
                  _v(u["profit_factor"]), _v(u["direction_accuracy"], "direction_accuracy"), str(u["n_trades"])]
                 for u in result.units]
    sections.append(reports.Section("Every unit", [_wide(unit_rows, [
        "fold", "seed", "arm", "total return", "Sharpe", "max DD", "win rate", "profit factor", "dir. accuracy",
        "trades"])]))
    if result.quality:
        quality_rows = [[arm_label(q["arm"]), _v(q["tstr_ratio"]), _v(q["kl_returns"]), f"{q['acf1_diff']:+.3f}",
                         _v(q["diversity"]), _v(q["diversity_expected"])] for q in result.quality]
        sections.append(reports.Section("Synthetic-data quality", [_wide(quality_rows, [
            "material", "TSTR ratio", "KL(returns)", "lag-1 ACF diff", "diversity", "same-distribution level"])]))
    if result.stress:
        st = result.stress
        stress_rows = [[arm_label(a), _v(r["mean_return"], "total_return"), _v(r["worst_return"], "total_return"),
                        _v(r["survival_rate"], "win_rate"), _v(r["avg_recovery_bars"]),
                        _v(r["recovered_share"], "win_rate")] for a, r in st["arms"].items()]
        sections.append(reports.Section("Stress test", [
            reports.Paragraph(f"{st['num']} paths × {st['horizon']} bars from {st['generator']['name']}; each arm's "
                              f"last-fold strategy, mean over seeds; ruin below {st['ruin']:g} of capital."),
            _wide(stress_rows, ["arm", "mean return", "worst return", "survival", "avg recovery (bars)",
                                        "recovered"])]))
    folds = [[str(f["fold"] + 1), f["train_first"], f["train_last"], f["test_first"], f["test_last"]]
             for f in result.folds]
    sections.append(reports.Section("Folds", [_wide(folds, ["fold", "train first", "train last",
                                                                     "test first", "test last"])]))
    return reports.Page(f"marketsynth augment: {s['strategy']}", sections, subtitle=str(result.data.get("label")))


def write_augment(folder: Path, result: AugmentResult) -> dict[str, Path]:
    """augment.json, augment.txt and augment.html into ``folder``."""
    folder = Path(folder)
    written = {"augment.json": write_json(folder / "augment.json", result.to_dict())}
    with atomic_path(folder / "augment.txt") as tmp:
        tmp.write_text(augment_text(result), encoding="utf-8")
    written["augment.txt"] = folder / "augment.txt"
    reports.write_page(folder / "augment.html", augment_page(result))
    written["augment.html"] = folder / "augment.html"
    return written


# ---- stress ------------------------------------------------------------------------------------------------------
def stress_rows(summary: dict[str, Any]) -> list[list[str]]:
    """The stress table as text rows (terminal and HTML)."""
    dd = summary["max_drawdown"]
    return [["paths", str(summary["paths"])],
            ["mean return", _v(summary["mean_return"], "total_return")],
            ["median return", _v(summary["median_return"], "total_return")],
            ["worst return", _v(summary["worst_return"], "total_return")],
            ["survival rate", _v(summary["survival_rate"], "win_rate")],
            ["paths with a drawdown", str(summary["paths_with_drawdown"])],
            ["recovered within the horizon", _v(summary["recovered_share"], "win_rate")],
            ["average recovery time (bars)", _v(summary["avg_recovery_bars"])],
            *[[f"max drawdown {k}", _v(dd[k], "max_drawdown")] for k in ("mean", "p5", "p25", "p50", "p75", "p95",
                                                                          "worst")]]


def fan_figure(result: StressResult) -> Figure:
    fig = Figure(figsize=(8, 4.2))
    ax = fig.subplots()
    fan = result.fan()
    steps = np.arange(fan.shape[1])
    ax.fill_between(steps, fan[0], fan[-1], color="tab:blue", alpha=0.2, linewidth=0,
                    label=f"{FAN_PERCENTILES[0]}–{FAN_PERCENTILES[-1]}th percentile")
    ax.fill_between(steps, fan[1], fan[-2], color="tab:blue", alpha=0.35, linewidth=0,
                    label=f"{FAN_PERCENTILES[1]}–{FAN_PERCENTILES[-2]}th percentile")
    ax.plot(steps, fan[len(fan) // 2], color="tab:blue", linewidth=1.8, label="median")
    for path in result.equity[:20]:
        ax.plot(steps, path / path[0], color="0.4", linewidth=0.4, alpha=0.5)
    ax.axhline(result.settings["ruin"], color="tab:red", linewidth=1, linestyle="--", label="ruin level")
    ax.set_xlabel("bars into the synthetic path")
    ax.set_ylabel("equity / starting capital")
    ax.set_title(f"{result.settings['strategy']} over {result.settings['num']} synthetic paths")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def drawdown_figure(result: StressResult) -> Figure:
    fig = Figure(figsize=(8, 3.6))
    ax = fig.subplots()
    ax.hist(result.stats["max_drawdown"] * 100, bins=40, color="0.55")
    ax.set_xlabel("max drawdown, % of the peak")
    ax.set_ylabel("paths")
    ax.set_title("Distribution of max drawdowns")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def stress_page(result: StressResult) -> reports.Page:
    s, g = result.settings, result.settings["generator"]
    how = f"regime {g['regime']}" if g.get("regime") else f"temperature {g.get('temperature') or 1:g}"
    blocks = [reports.Paragraph([f"{s['strategy']} over {s['num']} paths of {s['horizon']} bars from ",
                                 reports.Code(str(g["path"])), f" ({g['name']}, {how}, seed {g['seed']}), each after "
                                 f"the last {s['warm']} real bars (to {g['starts_after']}); only the synthetic bars "
                                 f"are traded and counted. Survival: equity never below {s['ruin']:g} of capital."]),
              reports.Table(stress_rows(result.summary())),
              reports.Figure(reports.figure_png(fan_figure(result)), "fan.png"),
              reports.Figure(reports.figure_png(drawdown_figure(result)), "drawdowns.png")]
    if result.notes:
        blocks.append(reports.Bullets(result.notes))
    return reports.Page(f"marketsynth stress: {s['strategy']}", [reports.Section("Stress test", blocks)],
                        subtitle=f"{g['name']} ({how})")


def write_stress(folder: Path, result: StressResult) -> dict[str, Path]:
    """stress.json and stress.html into ``folder``."""
    folder = Path(folder)
    written = {"stress.json": write_json(folder / "stress.json", result.to_dict())}
    reports.write_page(folder / "stress.html", stress_page(result))
    written["stress.html"] = folder / "stress.html"
    return written
