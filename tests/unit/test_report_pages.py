"""The one page mechanism (``marketsynth.reports``): blocks, the shared layout, escaping, side files, atomic writes.

One test per page type (evaluation report, scenarios report, comparison page) renders it with hostile text and checks
that it is escaped and that the page carries the shared layout.
"""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure as MplFigure  # noqa: E402

from marketsynth.data.io import atomic_directory  # noqa: E402
from marketsynth.errors import ConfigError, DataError  # noqa: E402
from marketsynth.evaluation.records import EvaluationResult, MetricRecord  # noqa: E402
from marketsynth.evaluation.report import write_report  # noqa: E402
from marketsynth.reports import (  # noqa: E402
    Badge,
    Bullets,
    Code,
    Figure,
    Heading,
    MetricRow,
    MetricTable,
    Note,
    Page,
    Paragraph,
    Section,
    Strong,
    Table,
    figure_png,
    render_page,
    write_page,
)

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
LAYOUT = ('<!DOCTYPE html>', '<meta name="generator" content="marketsynth ', '<body class="marketsynth-page">',
          '<header class="page-header">', '<nav class="page-nav">', '<footer class="page-footer">')


def png() -> bytes:
    fig = MplFigure(figsize=(2, 1))
    fig.subplots().plot([1, 3, 2])
    return figure_png(fig)


def assert_safe_page(text: str, sections: list[str]) -> None:
    """Escaped hostile text, no script or external resource, the shared layout, a nav link to every section."""
    assert "<script" not in text.lower() and ESCAPED in text
    for external in ('src="http', "<link", "@import", "url("):
        assert external not in text
    for marker in LAYOUT:
        assert marker in text, marker
    ids = re.findall(r'<section id="([^"]+)">', text)
    assert re.findall(r'<nav class="page-nav">(.*?)</nav>', text)[0].count("<a href=") == len(ids)
    for section_id in ids:
        assert f'href="#{section_id}"' in text
    headings = re.findall(r"<h2>(.*?)</h2>", text)
    assert headings == sections


# ---- the three page types -------------------------------------------------------------------------------------
def test_evaluation_page_escapes_hostile_text(tmp_path):
    record = MetricRecord(f"group {EVIL}", f"metric {EVIL}", 0.1, 0.2, 0.3, "closer", "poor", f"why {EVIL}")
    result = EvaluationResult([record], "default", 12, 10, 10, None, 0, 1.0, notes=[f"note {EVIL}"])
    extra = Section(f"extra {EVIL}", [Figure(png(), f"{EVIL}.png", caption=f"caption {EVIL}")])
    path = write_report(tmp_path / "report.html", title=EVIL, result=result, sections=[extra],
                        summary={f"key {EVIL}": f"value {EVIL}"})
    text = path.read_text(encoding="utf-8")
    assert_safe_page(text, ["Summary", "Metrics", f"extra {ESCAPED}", "Notes"])
    assert f"<title>{ESCAPED}</title>" in text and f"<h1>{ESCAPED}</h1>" in text
    for fragment in (f"metric {ESCAPED}", f"why {ESCAPED}", f"group {ESCAPED}", f"note {ESCAPED}",
                     f"key {ESCAPED}", f"value {ESCAPED}", f"caption {ESCAPED}"):
        assert fragment in text, fragment
    assert [p.name for p in (tmp_path / "report_files").iterdir()] == ["script.png"]  # after the last slash
    assert '<span class="badge poor">poor</span>' in text


def test_scenarios_page_escapes_hostile_text(tmp_path):
    from marketsynth.risk.measures import LEVELS
    from marketsynth.risk.report import write_html
    from marketsynth.risk.scenarios import ScenarioAnalysis, summarize

    rng = np.random.default_rng(0)
    paths = np.cumsum(rng.normal(0, 0.01, (200, 6)), axis=1)
    base = summarize(paths[:, -1], label=f"T=1 {EVIL}", threshold=0.1, temperature=1.0)
    fan = np.concatenate([np.zeros((7, 1)), np.percentile(paths, [1, 5, 25, 50, 75, 95, 99], axis=0)], axis=1)
    settings = {"num": 200, "horizon": 6, "temperature": 1.0, "regime": EVIL, "position": 1.0, "threshold": 0.1,
                "seed": 3, "stress_temperatures": [1.0]}
    model = {"path": f"runs/{EVIL}", "name": f"garch {EVIL}", "seq_len": 24, "conditional": False,
             "simulation": "one continuous path"}
    analysis = ScenarioAnalysis(settings, model, base, [base], None, f"n/a: {EVIL}", fan, paths[:, -1],
                                [f"note {EVIL}"], {level: (0.001, 0.002) for level in LEVELS})
    text = write_html(analysis, tmp_path / "risk.html").read_text(encoding="utf-8")
    assert_safe_page(text, ["Summary", "Risk scenarios"])
    for fragment in (f"<code>runs/{ESCAPED}</code>", f"garch {ESCAPED}", f"regime {ESCAPED}", f"T=1 {ESCAPED}",
                     f"Real data: n/a: {ESCAPED}", f"<li>note {ESCAPED}</li>", "Distribution of the horizon P&amp;L"):
        assert fragment in text, fragment
    assert "CVaR 99%" in text and text.count("data:image/png;base64,") == 2
    assert sorted(p.name for p in (tmp_path / "risk_files").iterdir()) == ["loss_histogram.png",
                                                                          "scenario_fan_chart.png"]


def test_comparison_page_escapes_hostile_text(tmp_path):
    from marketsynth.comparison import Comparison

    rows = [{"model": f"dcgan {EVIL}", "tstr_ratio": 0.9, "fidelity": 0.12, "coherence": 0.3, "discriminative": 0.2,
             "predictive": 0.05, "predictive_real": 0.04, "memorization": 0.05, "train_seconds": 30, "epochs": 10,
             "stability": None}, {"model": "real (training period)", "discriminative": 0.1}]
    meta = {"data": f"BTCUSDT {EVIL}", "train": f"train {EVIL}", "test": "test", "budget_seconds": 60, "seeds": 1,
            "seq_len": 24, "seed": 0}
    paths = Comparison(rows, [], meta).write(tmp_path)
    text = paths["html"].read_text(encoding="utf-8")
    assert_safe_page(text, ["Summary", "Comparison", "Definitions"])
    for fragment in (f"<title>marketsynth compare: BTCUSDT {ESCAPED}</title>", f"<td>dcgan {ESCAPED}</td>",
                     f"<td>train {ESCAPED}</td>", "<th>TSTR ratio ↑</th>", "<li><b>TSTR ratio</b>: mean over"):
        assert fragment in text, fragment
    assert [p.name for p in (tmp_path / "comparison_files").iterdir()] == ["comparison.png"]


# ---- blocks and the writer ------------------------------------------------------------------------------------
def test_every_block_renders_escaped_and_badges_only_take_known_colours():
    page = Page(EVIL, [Section("All <blocks>", [
        Paragraph(["plain & ", Strong(EVIL), " ", Code(EVIL), " ", Badge("good", "3 good")], style="lead"),
        Note(f"small {EVIL}"), Heading(EVIL), Bullets([[Badge("fair"), " item"], EVIL], plain=True),
        Table([["key", EVIL], [1, None]]), Table([["a", "b"]], header=["x", EVIL], style="wide"),
        MetricTable([f"group {EVIL}", MetricRow(EVIL, ["1", "2"], f'"><{EVIL}', EVIL, f"hint {EVIL}")],
                    columns=["strategy", "benchmark"]),
        Figure(b"\x89PNG fake", EVIL)])], subtitle=f"from {EVIL}")
    text = render_page(page)
    assert "<script" not in text and text.count(ESCAPED) == 15  # every hostile string above
    assert '<p class="lead">plain &amp; <b>' in text and '<span class="badge good">3 good</span>' in text
    assert '<p class="note">small' in text and '<ul class="plain">' in text and '<span class="badge fair">fair' in text
    assert f'<p class="subtitle">from {ESCAPED}</p>' in text and "<td>1</td><td></td>" in text
    assert '<th colspan="5">group' in text and "<th>strategy</th><th>benchmark</th><th>verdict</th>" in text
    assert '<span class="badge na">&#34;&gt;&lt;' in text  # unknown verdict: grey, its text escaped
    assert "figure file:" not in text  # no side folder when only rendered
    with pytest.raises(ValueError, match="style"):
        Table([["a"]], style="<x>")


def test_side_files_are_named_safely_and_the_folder_follows_the_page(tmp_path):
    page = Page("t", [Section("s", [Figure(png(), "a b.png"), Figure(png(), "a b.png")])])
    write_page(tmp_path / "p.html", page, files={"trades.csv": b"t,x\n1,2\n", "../up.csv": b"u\n"})
    folder = tmp_path / "p_files"
    assert sorted(p.name for p in folder.iterdir()) == ["a_b-2.png", "a_b.png", "trades.csv", "up.csv"]
    assert (folder / "trades.csv").read_bytes() == b"t,x\n1,2\n"
    text = (tmp_path / "p.html").read_text(encoding="utf-8")
    assert '<a href="p_files/a_b-2.png">p_files/a_b-2.png</a>' in text and "in p_files/ beside this page" in text
    write_page(tmp_path / "p.html", Page("t", [Section("no figures")]))  # a page without side files: no folder
    assert not folder.exists() and "beside this page" not in (tmp_path / "p.html").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="only .png, .csv"):
        write_page(tmp_path / "p.html", page, files={"x.exe": b""})
    with pytest.raises(ConfigError, match=r"\.html"):
        write_page(tmp_path / "p.txt", page)
    with pytest.raises(DataError, match="does not exist"):
        write_page(tmp_path / "missing" / "p.html", page)
    assert not list(tmp_path.glob(".*"))


def test_atomic_directory_keeps_the_old_folder_when_writing_fails(tmp_path):
    target = tmp_path / "out"
    with atomic_directory(target) as tmp:
        (tmp / "a.png").write_bytes(b"1")
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "b.png").write_bytes(b"2")
        raise RuntimeError("boom")
    assert [p.name for p in target.iterdir()] == ["a.png"] and not list(tmp_path.glob(".*"))
    with atomic_directory(target) as tmp:
        (tmp / "c.png").write_bytes(b"3")
    assert [p.name for p in target.iterdir()] == ["c.png"] and not list(tmp_path.glob(".*"))


def test_figure_png_is_deterministic_and_closes_pyplot_figures():
    import matplotlib.pyplot as plt

    assert png() == png() and png().startswith(b"\x89PNG\r\n\x1a\n")
    fig = plt.figure()
    figure_png(fig)
    assert not plt.get_fignums()


def test_templates_are_package_data():
    """Every template the pages use ships in the package (pyproject's package-data names reports/templates/*.j2)."""
    from importlib.resources import files

    names = {p.name for p in files("marketsynth.reports").joinpath("templates").iterdir()}
    assert {"layout.html.j2", "page.html.j2", "section.html.j2", "table.html.j2", "metric_table.html.j2",
            "figure.html.j2"} <= names
