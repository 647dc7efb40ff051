"""The evaluation report: one self-contained HTML page (images embedded as base64 PNG) plus the PNGs beside it.

``write_report`` assembles sections (a summary in plain language, the metrics table with verdicts, what gives the
synthetic windows away when the result carries a diagnosis, candlestick samples, return distributions,
autocorrelations, PCA / t-SNE of windows, memorization, training curves, notes) and any ``reports.Section`` a
caller adds (risk, model comparisons...), and writes them with the one page layout (``marketsynth.reports``:
jinja2 templates, autoescape on, so everything from data or users is escaped). The figures themselves are drawn
in ``plots``; the analysis sections live in ``report_sections``, the diagnosis's in ``report_diagnosis``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from marketsynth.evaluation.formatting import format_values
from marketsynth.evaluation.records import VERDICTS, EvaluationResult, MetricRecord
from marketsynth.reports import (
    Badge,
    Bullets,
    Heading,
    MetricRow,
    MetricTable,
    Note,
    Page,
    Paragraph,
    Section,
    Strong,
    Table,
    write_page,
)

VERDICT_MEANING = {"good": "within the 'good' limit stated in the explanation",
                   "fair": "outside the 'good' limit but within the 'fair' one",
                   "poor": "outside both limits", "n/a": "could not be measured on these windows"}
BETTER_TEXT = {"closer": "best: close to real", "lower": "best: low", "higher": "best: high"}
PROBLEMS = (  # (metric name prefix, what a poor or fair verdict means for a user of the data)
    ("mean return", "synthetic prices drift up or down at a different rate than real ones"),
    ("volatility (std", "synthetic prices move more or less than real ones on a typical bar"),
    ("kurtosis", "extreme moves are too rare or too common"),
    ("lag-1", "one bar's move hints at the next one differently than in real markets"),
    ("KL divergence", "the distribution of single-bar moves has a different shape"),
    ("coverage", "the generator repeats a limited set of patterns and misses part of what real markets do"),
    ("tail index", "crashes and spikes are milder or wilder than real ones"),
    ("volatility clustering", "calm and wild periods do not come in runs the way they do in real markets"),
    ("linear autocorrelation", "past moves predict the direction of future moves, which real markets hardly allow"),
    ("leverage", "falls are not followed by extra volatility the way they are in real markets"),
    ("aggregational", "moves added up over several bars have the wrong distribution"),
    ("discriminative", "a small neural network can tell synthetic windows from real ones"),
    ("predictive", "a forecaster trained on synthetic data does worse on real data than one trained on real data"),
    ("TSTR", "models trained on synthetic data predict real outcomes worse than models trained on real data"),
    ("memorization", "the generator seems to copy its training windows (a privacy and overfitting risk)"),
    ("candle validity", "some synthetic candles are impossible (e.g. a high below the close)"),
)


def write_report(path: str | Path, *, title: str, result: EvaluationResult | None = None,
                 real_windows=None, synthetic_windows=None, model_dir: str | Path | None = None,
                 sections: Sequence[Section] = (), summary: dict[str, str] | None = None) -> Path:
    """Write the HTML report to ``path`` and its PNGs to ``<stem>_files/``; return ``path``.

    ``real_windows`` / ``synthetic_windows`` are candle windows ``[n, L, 5]`` in price units (for the candle
    charts and the PCA / t-SNE); without them the plots come from ``result.curves``. ``model_dir`` (a checkpoint
    directory) adds its training curves; ``sections`` are appended in order; ``summary`` rows open the page.
    Both are written atomically (``reports.write_page``): a failure leaves an earlier report intact.
    """
    from marketsynth.evaluation import report_diagnosis, report_sections

    notes: list[str] = []
    built = [_summary_section(result, summary)]
    if result is not None:
        built.append(metrics_section(result))
        if result.diagnosis is not None:
            built.append(report_diagnosis.diagnosis_section(result.diagnosis))
    built += report_sections.analysis_sections(result, real_windows, synthetic_windows, notes)
    if model_dir is not None:
        built.append(report_sections.training_section(Path(model_dir), notes))
    built += list(sections)
    notes = [*(result.notes if result is not None else []), *notes]
    if notes:
        built.append(Section("Notes", [Bullets(notes)]))
    return write_page(path, Page(title, built))


# ---- summary and metrics ------------------------------------------------------------------------------------
def _summary_section(result: EvaluationResult | None, summary: dict[str, str] | None) -> Section:
    rows = [[key, value] for key, value in (summary or {}).items()]
    if result is not None:
        rows.append(["windows compared", f"{result.n_real:,} real and {result.n_synthetic:,} synthetic windows of "
                                         f"{result.seq_len} bars"])
        if result.n_train is not None:
            rows.append(["training windows", f"{result.n_train:,}"])
        rows.append(["protocol", f"{result.protocol} (seed {result.seed}; evaluation took {result.seconds:.0f} s)"])
    blocks: list = [Table(rows)] if rows else []
    if result is not None and result.records:
        counts = result.verdict_counts()
        badges = [part for v in VERDICTS if counts[v] for part in (" ", Badge(v, f"{counts[v]} {v}"))]
        blocks.append(Paragraph([Strong(f"Verdicts over {len(result.records)} checks:"), *badges], style="lead"))
        blocks += [Heading("What this means"), *what_it_means(result)]
    return Section("Summary", blocks)


def what_it_means(result: EvaluationResult) -> list:
    """The verdicts in plain language (page blocks): the overall picture, each weak point, the caveat."""
    poor = [r for r in result.records if r.verdict == "poor"]
    fair = [r for r in result.records if r.verdict == "fair"]
    good = [r for r in result.records if r.verdict == "good"]
    measured = len(poor) + len(fair) + len(good)
    if measured == 0:
        return [Paragraph("None of the checks could be measured on these windows; see the notes.")]
    if not poor and not fair:
        lead = (f"The synthetic candles match the real ones on all {measured} checks that could be measured: their "
                "moves, the way those moves cluster in time, and how hard they are to tell apart.")
    elif not poor:
        lead = f"The synthetic candles are close to the real ones: none of {measured} checks is poor."
    else:
        lead = (f"The synthetic candles differ from the real ones in {len(poor)} of {measured} checks. Use them "
                "with care where these properties matter:")
    out: list = [Paragraph(lead)]
    for label, records in (("poor", poor), ("fair", fair)):
        if records:
            out.append(Bullets([[Badge(label), " ", Strong(r.name), f": {_problem(r.name)}"] for r in records],
                               plain=True))
    if good:
        out.append(Paragraph([Badge("good"), f" {_names(good)}."]))
    out.append(Note("Verdicts compare each number with fixed limits stated in the metrics table. Even two stretches "
                    "of real data do not score 'good' everywhere (markets change), so before blaming a model "
                    "compare with a real-vs-real baseline (marketsynth.evaluation.real_vs_real_floor)."))
    return out


def _problem(name: str) -> str:
    return next((text for prefix, text in PROBLEMS if name.startswith(prefix)), "see the metrics table")


def _names(records: Sequence[MetricRecord], limit: int = 12) -> str:
    names = [r.name for r in records]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def metrics_section(result: EvaluationResult) -> Section:
    """The metrics table grouped as ``evaluate`` groups them, one plain-language verdict per metric."""
    rows: list[MetricRow | str] = []
    group = None
    for record in result.records:
        if record.group != group:
            group = record.group
            rows.append(group)
        rows.append(MetricRow(record.name, format_values(record), record.verdict, record.explanation,
                              BETTER_TEXT.get(record.better, "")))
    legend = [part for v in VERDICTS for part in (Badge(v), f" {VERDICT_MEANING[v]} ")]
    return Section("Metrics", [
        Paragraph(["Each row compares one property of the synthetic windows with the real ones. ", Strong("Distance"),
                   " is how far apart they are (0 = identical); the verdict grades it. Where a metric only exists "
                   "as a comparison, ", Strong("Real"), " shows what identical data would score (or is empty)."]),
        Note(legend),
        MetricTable(rows)])
