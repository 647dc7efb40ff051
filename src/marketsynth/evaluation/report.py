"""The evaluation report: one self-contained HTML file (images embedded as base64 PNG) plus the PNGs beside it.

``write_report`` assembles sections (a summary in plain language, the metrics table with verdicts, candlestick
samples, return distributions, autocorrelations, PCA / t-SNE of windows, memorization, training curves, notes)
and any ``ReportSection`` a caller adds (risk, model comparisons...). The page needs nothing from the network:
no external CSS, scripts or fonts, so it opens offline and can be mailed as one file. Everything that comes from
data or users is HTML-escaped; only ``ReportSection.html`` is trusted (callers build it with ``html_table`` or
``html.escape``). The figures themselves are drawn in ``plots``; the analysis sections live in ``report_sections``.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from marketsynth.data.io import atomic_path
from marketsynth.errors import ConfigError, DataError
from marketsynth.evaluation.records import VERDICTS, EvaluationResult, MetricRecord

PNG_DPI = 110
VERDICT_COLOURS = {"good": ("#1a7f37", "#dafbe1"), "fair": ("#9a6700", "#fff8c5"), "poor": ("#cf222e", "#ffebe9"),
                   "n/a": ("#57606a", "#eaeef2")}
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


@dataclass
class ReportSection:
    title: str
    html: str  # trusted HTML fragment (tables, paragraphs)
    images: list[tuple[str, bytes]] = field(default_factory=list)  # (file name, PNG bytes), embedded + written


def figure_png(fig) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it (pyplot figures are released from pyplot too)."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=PNG_DPI, metadata={"Software": None}, facecolor="white")
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return buffer.getvalue()


def html_table(rows: Sequence[Sequence], header: Sequence[str] | None = None, *, css_class: str = "kv") -> str:
    """A small escaped HTML table (for sections built by other modules)."""
    head = "" if header is None else "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{_e(css_class)}">{head}{body}</table>'


def write_report(path: str | Path, *, title: str, result: EvaluationResult | None = None,
                 real_windows=None, synthetic_windows=None, model_dir: str | Path | None = None,
                 sections: Sequence[ReportSection] = (), summary: dict[str, str] | None = None) -> Path:
    """Write the HTML report to ``path`` and its PNGs to ``<stem>_files/``; return ``path``.

    ``real_windows`` / ``synthetic_windows`` are candle windows ``[n, L, 5]`` in price units (for the candle
    charts and the PCA / t-SNE); without them the plots come from ``result.curves``. ``model_dir`` (a checkpoint
    directory) adds its training curves; ``sections`` are appended in order; ``summary`` rows open the page.
    Both files are written atomically: a failure leaves an earlier report intact.
    """
    from marketsynth.evaluation import report_sections

    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"report {path}: use a file name ending in .html")
    if not path.parent.is_dir():
        raise DataError(f"cannot write report {path}: folder {path.parent} does not exist")
    notes: list[str] = []
    built = [_summary_section(result, summary)]
    if result is not None:
        built.append(metrics_section(result))
    built += report_sections.analysis_sections(result, real_windows, synthetic_windows, notes)
    if model_dir is not None:
        built.append(report_sections.training_section(Path(model_dir), notes))
    built += list(sections)
    notes = [*(result.notes if result is not None else []), *notes]
    if notes:
        built.append(ReportSection("Notes", "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"))
    files = _file_names(built)
    _write_files(path, built, files, _page(title, built, files, f"{path.stem}_files"))
    return path


# ---- summary and metrics ------------------------------------------------------------------------------------
def _summary_section(result: EvaluationResult | None, summary: dict[str, str] | None) -> ReportSection:
    rows = list((summary or {}).items())
    if result is not None:
        rows.append(("windows compared", f"{result.n_real:,} real and {result.n_synthetic:,} synthetic windows of "
                                         f"{result.seq_len} bars"))
        if result.n_train is not None:
            rows.append(("training windows", f"{result.n_train:,}"))
        rows.append(("protocol", f"{result.protocol} (seed {result.seed}; evaluation took {result.seconds:.0f} s)"))
    parts = [html_table(rows)] if rows else []
    if result is not None and result.records:
        counts = result.verdict_counts()
        badges = " ".join(_badge(v, f"{counts[v]} {v}") for v in VERDICTS if counts[v])
        parts.append(f"<p class='verdicts'><b>Verdicts over {len(result.records)} checks:</b> {badges}</p>")
        parts.append("<h3>What this means</h3>" + what_it_means(result))
    return ReportSection("Summary", "\n".join(parts))


def what_it_means(result: EvaluationResult) -> str:
    """The verdicts in plain language (escaped HTML): the overall picture, each weak point, the caveat."""
    poor = [r for r in result.records if r.verdict == "poor"]
    fair = [r for r in result.records if r.verdict == "fair"]
    good = [r for r in result.records if r.verdict == "good"]
    measured = len(poor) + len(fair) + len(good)
    if measured == 0:
        return "<p>None of the checks could be measured on these windows; see the notes.</p>"
    if not poor and not fair:
        lead = (f"The synthetic candles match the real ones on all {measured} checks that could be measured: their "
                "moves, the way those moves cluster in time, and how hard they are to tell apart.")
    elif not poor:
        lead = f"The synthetic candles are close to the real ones: none of {measured} checks is poor."
    else:
        lead = (f"The synthetic candles differ from the real ones in {len(poor)} of {measured} checks. Use them "
                "with care where these properties matter:")
    out = [f"<p>{_e(lead)}</p>"]
    for label, records in (("poor", poor), ("fair", fair)):
        if records:
            items = "".join(f"<li>{_badge(label, label)} <b>{_e(r.name)}</b>: {_e(_problem(r.name))}</li>"
                            for r in records)
            out.append(f"<ul class='plain'>{items}</ul>")
    if good:
        out.append(f"<p>{_badge('good', 'good')} {_e(_names(good))}.</p>")
    out.append("<p class='legend'>Verdicts compare each number with fixed limits stated in the metrics table. Even "
               "two stretches of real data do not score 'good' everywhere (markets change), so before blaming a "
               "model compare with a real-vs-real baseline (marketsynth.evaluation.real_vs_real_floor).</p>")
    return "".join(out)


def _problem(name: str) -> str:
    return next((text for prefix, text in PROBLEMS if name.startswith(prefix)), "see the metrics table")


def _names(records: Sequence[MetricRecord], limit: int = 12) -> str:
    names = [r.name for r in records]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def metrics_section(result: EvaluationResult) -> ReportSection:
    """The metrics table grouped as ``evaluate`` groups them, one plain-language verdict per metric."""
    rows = []
    group = None
    for record in result.records:
        if record.group != group:
            group = record.group
            rows.append(f"<tr class='group'><th colspan='6'>{_e(group)}</th></tr>")
        real, synthetic, distance = format_values(record)
        rows.append(
            f"<tr><td class='name'>{_e(record.name)}<div class='hint'>{_e(BETTER_TEXT.get(record.better, ''))}"
            f"</div></td><td class='num'>{_e(real)}</td><td class='num'>{_e(synthetic)}</td>"
            f"<td class='num'>{_e(distance)}</td><td>{_badge(record.verdict, record.verdict)}</td>"
            f"<td class='why'>{_e(record.explanation)}</td></tr>")
    legend = " ".join(f"{_badge(v, v)} {_e(VERDICT_MEANING[v])}" for v in VERDICTS)
    return ReportSection("Metrics", (
        "<p>Each row compares one property of the synthetic windows with the real ones. <b>Distance</b> is how far "
        "apart they are (0 = identical); the verdict grades it. Where a metric only exists as a comparison, "
        "<b>Real</b> shows what identical data would score (or is empty).</p>"
        f"<p class='legend'>{legend}</p>"
        "<table class='metrics'><tr><th>metric</th><th>real</th><th>synthetic</th><th>distance</th>"
        "<th>verdict</th><th>what it means</th></tr>" + "".join(rows) + "</table>"))


_PERCENT_METRICS = ("coverage", "memorization", "candle validity", "TSTR", "discriminative score")
_PERCENT_DISTANCES = ("volatility (std", "tail index", "coverage", "predictive", "TSTR", "memorization",
                      "candle validity", "discriminative score")


def format_values(record: MetricRecord) -> tuple[str, str, str]:
    """(real, synthetic, distance) as short strings: percentages where the explanation speaks in them."""
    name = record.name

    def value(x: float | None) -> str:
        if x is None:
            return "—"
        if name.startswith("mean return"):
            return f"{x:+.4%}"
        if name.startswith("volatility (std"):
            return f"{x:.3%}"
        if name.startswith(_PERCENT_METRICS):
            return f"{x:.2%}" if name.startswith("candle validity") else f"{x:.1%}"
        return number(x)

    synthetic = value(record.synthetic)
    spread = record.details.get("std") if isinstance(record.details, dict) else None
    if spread is not None and record.synthetic is not None and len(record.details.get("runs", [])) > 1:
        synthetic += f" ± {value(spread).lstrip('+')}"
    if record.distance is None:
        distance = "—"
    elif name.startswith(_PERCENT_DISTANCES):
        distance = f"{record.distance:.1%}" if record.distance < 10 else f"{record.distance:.3g}×"
    else:
        distance = number(record.distance)
    return value(record.real), synthetic, distance


def number(x: float | None) -> str:
    """3 significant digits, thousands separators, scientific only for tiny or huge values."""
    if x is None:
        return "—"
    size = abs(x)
    if size == 0:
        return "0"
    if size >= 1e6 or size < 1e-4:
        return f"{x:.2e}"
    if size >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}" if size < 100 else f"{x:.1f}"


def _badge(verdict: str, text: str) -> str:
    colour, background = VERDICT_COLOURS.get(verdict, VERDICT_COLOURS["n/a"])
    return f"<span class='badge' style='color:{colour};background:{background}'>{_e(text)}</span>"


def _e(value) -> str:
    return html.escape(str(value), quote=True)


# ---- page and files -----------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2328;margin:0;
background:#f6f8fa;line-height:1.45}
main{max-width:1240px;margin:0 auto;padding:24px 32px 64px;background:#fff}
h1{margin:0 0 4px;font-size:28px}h2{margin-top:36px;border-bottom:2px solid #d0d7de;padding-bottom:4px}
nav{font-size:14px;margin:8px 0 16px}nav a{margin-right:14px;color:#0969da;text-decoration:none}
table{border-collapse:collapse;margin:8px 0 16px;font-size:14px}td,th{padding:5px 10px;text-align:left;
vertical-align:top;border-bottom:1px solid #eaeef2}table.kv td:first-child{color:#57606a;white-space:nowrap}
table.metrics{width:100%}table.metrics th{background:#f6f8fa}tr.group th{background:#eef3fb;font-size:15px;
padding-top:10px}td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
td.name{font-weight:600;min-width:170px}td.why{color:#424a53;font-size:13px;max-width:560px}
.hint{font-weight:400;color:#6e7781;font-size:12px}.badge{display:inline-block;padding:1px 9px;border-radius:10px;
font-weight:600;font-size:13px;white-space:nowrap}.legend{font-size:13px;color:#57606a}
figure{margin:12px 0 20px}figure img{max-width:100%;height:auto;border:1px solid #eaeef2}
figcaption{font-size:12px;color:#6e7781}figcaption a{color:#6e7781}.verdicts{font-size:15px}
ul.plain{padding-left:18px}ul.plain li{list-style:none;margin:4px 0}
"""


def _page(title: str, sections: Sequence[ReportSection], files: list[list[str]], folder: str) -> str:
    ids = [f"s{i}-{re.sub(r'[^a-z0-9]+', '-', s.title.lower()).strip('-')}" for i, s in enumerate(sections)]
    nav = "".join(f"<a href='#{ids[i]}'>{_e(s.title)}</a>" for i, s in enumerate(sections))
    body = []
    for section_id, section, names in zip(ids, sections, files, strict=True):
        figures = "".join(
            f"<figure><img alt='{_e(name)}' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>"
            f"<figcaption>figure file: <a href='{_e(folder)}/{_e(name)}'>{_e(folder)}/{_e(name)}</a>"
            "</figcaption></figure>"
            for name, (_, png) in zip(names, section.images, strict=True))
        body.append(f"<section id='{section_id}'><h2>{_e(section.title)}</h2>\n{section.html}\n{figures}</section>")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>"
            f"<h1>{_e(title)}</h1><nav>{nav}</nav>\n" + "\n".join(body) + "\n</main></body></html>\n")


def _file_names(sections: Sequence[ReportSection]) -> list[list[str]]:
    """Safe, unique PNG file names for every image (``a b.png`` -> ``a_b.png``, repeats get ``-2``)."""
    seen: set[str] = set()
    out = []
    for section in sections:
        names = []
        for name, _ in section.images:
            stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(name)).stem).strip("._") or "figure"
            candidate, i = f"{stem}.png", 2
            while candidate.lower() in seen:
                candidate, i = f"{stem}-{i}.png", i + 1
            seen.add(candidate.lower())
            names.append(candidate)
        out.append(names)
    return out


def _write_files(path: Path, sections: Sequence[ReportSection], files: list[list[str]], page: str) -> None:
    """PNGs into a temporary folder swapped in for ``<stem>_files``, then the HTML atomically."""
    folder = path.with_name(f"{path.stem}_files")
    if folder.exists() and (not folder.is_dir() or any(p.suffix.lower() != ".png" for p in folder.iterdir())):
        raise DataError(f"cannot write report images to {folder}: it exists and holds other files; "
                        f"move it or choose another report name")
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=path.parent))
    try:
        for section, names in zip(sections, files, strict=True):
            for name, (_, png) in zip(names, section.images, strict=True):
                (tmp / name).write_bytes(png)
        tmp.chmod(0o777 & ~_umask())
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_folder(tmp, folder)
    with atomic_path(path) as html_tmp:
        html_tmp.write_text(page, encoding="utf-8")
        html_tmp.chmod(0o666 & ~_umask())


def _umask() -> int:
    """The process umask (temporary files are created private; a report is meant to be shared like any file)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _swap_folder(tmp: Path, folder: Path) -> None:
    backup = folder.with_name(f".{folder.name}.previous-{os.getpid()}")
    if folder.exists():
        os.rename(folder, backup)
    os.rename(tmp, folder)
    shutil.rmtree(backup, ignore_errors=True)
